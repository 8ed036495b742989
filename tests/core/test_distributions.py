"""Tests for `acjax.distributions`."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from closeness import assert_close, report_errors  # noqa: F401 - report_errors: a fixture
from scipy import special, stats

from acjax.distributions import Categorical, DiagGaussian, TanhGaussian

TOL = 1e-5
VARIANTS = ("plain", "jit", "vmap")

def _assert_close(name, actual, expected, tol=TOL, rtol=0.0):
    assert_close(name, actual, expected, tol, rtol)


def _apply(variant, fn, *args):
    """Calls `fn(*args)` directly, under `jit`, or under `vmap` over the leading axis."""
    if variant == "plain":
        return fn(*args)
    if variant == "jit":
        return jax.jit(fn)(*args)
    return jax.vmap(fn)(*args)


def _np_log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    return logits - special.logsumexp(logits, axis=-1, keepdims=True)


def _np_entropy(logits):
    log_p = _np_log_softmax(logits)
    p = np.exp(log_p)
    return -np.sum(np.where(p > 0, p * np.where(p > 0, log_p, 0.0), 0.0), axis=-1)


# ----------------------------------------------------------------------------
# Categorical
# ----------------------------------------------------------------------------


def _categorical_stats(logits, actions):
    dist = Categorical(logits)
    return dist.log_prob(actions), dist.all_log_probs(), dist.entropy(), dist.probs()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 6)])
def test_categorical_log_prob_entropy_probs_match_numpy(variant, shape):
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    logits = 3.0 * jax.random.normal(k1, shape)
    num_actions = shape[-1]
    actions = jax.random.randint(k2, shape[:-1], 0, num_actions)
    log_prob, all_log_probs, entropy, probs = _apply(variant, _categorical_stats, logits, actions)
    ref_log_p = _np_log_softmax(logits)
    expected = np.take_along_axis(ref_log_p, np.asarray(actions)[..., None], -1)[..., 0]
    _assert_close("categorical log_prob", log_prob, expected)
    _assert_close("categorical all_log_probs", all_log_probs, ref_log_p)
    _assert_close("categorical entropy", entropy, _np_entropy(logits))
    _assert_close("categorical probs", probs, np.exp(ref_log_p))
    _assert_close("categorical probs sum", np.sum(probs, -1), np.ones(shape[:-1]))
    # The entropy of the uniform distribution is log(num_actions) and it is the maximum.
    uniform = np.log(num_actions)
    assert np.all(np.asarray(entropy) <= uniform + 1e-6)
    _assert_close("categorical uniform entropy", Categorical(jnp.zeros(shape)).entropy(),
                  np.full(shape[:-1], uniform))


def test_categorical_sample_frequencies_match_probs():
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.05, 0.25, 0.0]])
    dist = Categorical(jnp.log(jnp.asarray(probs, jnp.float32)))  # log 0 = -inf: never sampled
    n = 100_000
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    samples = np.asarray(jax.jit(jax.vmap(dist.sample))(keys))
    assert samples.shape == (n, 2) and samples.dtype == np.int32
    freqs = np.stack([np.bincount(samples[:, i], minlength=4) / n for i in range(2)])
    # Standard error of each frequency is at most sqrt(0.25 / n) = 0.0016.
    _assert_close("categorical sample frequencies", freqs, probs, tol=0.01)
    assert np.all(samples[:, 1] != 3)


def test_categorical_sample_batched_single_key():
    probs = np.array([0.6, 0.1, 0.3])
    n = 50_000
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(probs, jnp.float32)), (n, 3))
    samples = np.asarray(Categorical(logits).sample(jax.random.PRNGKey(2)))
    assert samples.shape == (n,)
    _assert_close("categorical batched frequencies", np.bincount(samples, minlength=3) / n,
                  probs, tol=0.015)


def test_categorical_mode_and_sample_and_log_prob():
    logits = jnp.array([[0.0, 2.0, 1.0], [5.0, 5.0, -1.0], [-3.0, -2.0, -1.0]])
    dist = Categorical(logits)
    mode = dist.mode()
    assert mode.dtype == jnp.int32
    np.testing.assert_array_equal(mode, [1, 0, 2])  # ties go to the first maximum
    key = jax.random.PRNGKey(3)
    actions, log_probs = dist.sample_and_log_prob(key)
    assert actions.dtype == jnp.int32 and actions.shape == (3,) and log_probs.shape == (3,)
    np.testing.assert_array_equal(actions, dist.sample(key))
    _assert_close("categorical sample_and_log_prob", log_probs, dist.log_prob(actions))


def test_categorical_sample_is_jax_categorical_and_noise_drawn_ahead_gives_the_same():
    """`sample(key)` is `jax.random.categorical(key, logits)` bit for bit, and noise drawn for
    many keys at once (as the rollout draws it before its loop) gives the same samples."""
    logits = jax.random.normal(jax.random.PRNGKey(0), (257, 5)) * 3.0
    keys = jax.random.split(jax.random.PRNGKey(1), 257)
    expected = jax.vmap(lambda k, l: jax.random.categorical(k, l))(keys, logits)
    dist = Categorical(logits)
    np.testing.assert_array_equal(jax.vmap(lambda d, k: d.sample(k))(dist, keys), expected)
    one = Categorical(jax.ShapeDtypeStruct((5,), jnp.float32))  # shapes suffice for the noise
    noise = jax.vmap(one.noise)(keys)
    assert noise.shape == (257, 5) and noise.dtype == jnp.float32
    np.testing.assert_array_equal(noise, jax.vmap(lambda k: jax.random.gumbel(k, (5,)))(keys))
    actions, log_probs = dist.sample_and_log_prob_from_noise(noise)
    np.testing.assert_array_equal(actions, expected)
    np.testing.assert_array_equal(log_probs, dist.log_prob(expected))
    with pytest.raises(ValueError, match=r"noise has shape \(257, 4\) but logits has"):
        dist.sample_from_noise(noise[:, :4])


@pytest.mark.parametrize("cls", [DiagGaussian, TanhGaussian])
def test_gaussian_noise_drawn_ahead_gives_the_same_samples(cls):
    mean = jax.random.normal(jax.random.PRNGKey(0), (33, 3))
    log_std = jnp.array([-0.5, 0.0, 0.3])
    keys = jax.random.split(jax.random.PRNGKey(1), 33)
    dist = cls(mean, log_std)
    noise = jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys)
    np.testing.assert_array_equal(
        jax.vmap(cls(jax.ShapeDtypeStruct((3,), jnp.float32), log_std).noise)(keys), noise)
    by_key = jax.vmap(lambda m, k: cls(m, log_std).sample_and_log_prob(k))(mean, keys)
    from_noise = dist.sample_and_log_prob_from_noise(noise)
    for a, b in zip(by_key, from_noise, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if cls is DiagGaussian:  # a = mu + sigma * eps
        sigma = jnp.broadcast_to(jnp.exp(log_std), mean.shape)
        np.testing.assert_allclose(from_noise[0], mean + sigma * noise, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(dist.sample_from_noise(noise), from_noise[0])


def test_categorical_log_prob_gradient_is_onehot_minus_probs():
    logits = jax.random.normal(jax.random.PRNGKey(4), (6, 5))
    actions = jnp.array([0, 4, 2, 2, 1, 3], jnp.int32)
    grad = jax.jit(jax.grad(lambda lg: jnp.sum(Categorical(lg).log_prob(actions))))(logits)
    expected = np.eye(5)[np.asarray(actions)] - np.exp(_np_log_softmax(logits))
    _assert_close("categorical grad log_prob", grad, expected)


def test_categorical_entropy_gradient_matches_finite_differences():
    logits = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (3, 4)), np.float64)
    grad = np.asarray(jax.jit(jax.grad(lambda lg: jnp.sum(Categorical(lg).entropy())))(
        jnp.asarray(logits, jnp.float32)))
    # Central differences of the float64 reference.
    h = 1e-6
    fd = np.zeros_like(logits)
    for idx in np.ndindex(*logits.shape):
        step = np.zeros_like(logits)
        step[idx] = h
        upper, lower = np.sum(_np_entropy(logits + step)), np.sum(_np_entropy(logits - step))
        fd[idx] = (upper - lower) / (2 * h)
    _assert_close("categorical grad entropy (finite differences)", grad, fd, tol=1e-5)
    # Analytic form: dH/dl_j = -p_j (log p_j + H).
    log_p = _np_log_softmax(logits)
    analytic = -np.exp(log_p) * (log_p + _np_entropy(logits)[:, None])
    _assert_close("categorical grad entropy (analytic)", grad, analytic)


EXTREME_LOGITS = [
    [0.0, -1e9, -1e9, 1.0],
    [1e9, 0.0, -1e9, -1e9],
    [0.0, -np.inf, 2.0, -np.inf],
    [3e4, -3e4, 0.0, 0.0],
    [-1e9, -1e9, -1e9, -1e9],
]


def _extreme_stats(logits):
    dist = Categorical(logits)
    mode = dist.mode()

    def log_prob_of_mode(lg):
        return Categorical(lg).log_prob(mode)

    masked = dist.log_prob(jnp.array([1, 2, 1, 1, 0], jnp.int32))
    grad_entropy = jax.grad(lambda lg: jnp.sum(Categorical(lg).entropy()))(logits)
    grad_log_prob = jax.grad(lambda lg: jnp.sum(log_prob_of_mode(lg)))(logits)
    return dist.entropy(), mode, log_prob_of_mode(logits), masked, grad_entropy, grad_log_prob


@pytest.mark.parametrize("variant", ("plain", "jit"))
def test_categorical_extreme_logits_are_finite(variant):
    logits = jnp.asarray(EXTREME_LOGITS, jnp.float32)
    entropy, mode, log_prob, masked, grad_entropy, grad_log_prob = map(
        np.asarray, _apply(variant, _extreme_stats, logits))
    assert np.all(np.isfinite(entropy)) and np.all(entropy >= 0.0)
    _assert_close("categorical extreme entropy", entropy, _np_entropy(np.asarray(EXTREME_LOGITS)))
    np.testing.assert_array_equal(mode, [3, 0, 2, 0, 0])
    _assert_close("categorical extreme log_prob", log_prob,
                  [-math.log1p(math.exp(-1.0)), 0.0, -math.log1p(math.exp(-2.0)), 0.0,
                   -math.log(4.0)])
    # A -1e9 logit gives a huge but finite log-probability; -inf gives -inf.
    assert np.all(np.isfinite(masked[[0, 1, 3, 4]]))
    assert masked[1] < -1e8 and masked[3] < -5e4 and masked[2] == -np.inf
    assert np.all(np.isfinite(grad_entropy)) and np.all(np.isfinite(grad_log_prob))
    # Masked actions get exactly zero gradient from the entropy.
    assert grad_entropy[0, 1] == 0.0 and grad_entropy[2, 1] == 0.0 and grad_entropy[2, 3] == 0.0
    # ... and the log-probability of an allowed action pushes them down by their (zero) mass.
    _assert_close("categorical extreme grad log_prob", grad_log_prob,
                  np.eye(4)[[3, 0, 2, 0, 0]] - np.exp(_np_log_softmax(EXTREME_LOGITS)))


def test_categorical_never_samples_masked_actions():
    logits = jnp.asarray(EXTREME_LOGITS, jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(6), 2000)
    samples = np.asarray(jax.jit(jax.vmap(Categorical(logits).sample))(keys))
    assert np.all(samples[:, 0] != 1) and np.all(samples[:, 0] != 2)
    assert np.all(samples[:, 1] == 0)
    assert np.all(samples[:, 2] != 1) and np.all(samples[:, 2] != 3)
    assert np.all(samples[:, 3] != 1)


def test_categorical_kl_divergence():
    p_logits = jax.random.normal(jax.random.PRNGKey(7), (4, 5))
    q_logits = jax.random.normal(jax.random.PRNGKey(8), (4, 5))
    log_p, log_q = _np_log_softmax(p_logits), _np_log_softmax(q_logits)
    expected = np.sum(np.exp(log_p) * (log_p - log_q), -1)
    _assert_close("categorical kl", Categorical(p_logits).kl_divergence(Categorical(q_logits)),
                  expected)
    _assert_close("categorical kl self", Categorical(p_logits).kl_divergence(
        Categorical(p_logits)), np.zeros(4))


def test_categorical_input_checks():
    dist = Categorical(jnp.zeros((3, 4)))
    with pytest.raises(TypeError, match="actions has dtype float32; pass integer"):
        dist.log_prob(jnp.zeros((3,), jnp.float32))  # actions must be integers
    with pytest.raises(ValueError, match=r"actions has shape \(4,\) .* batch shape \(3,\)"):
        dist.log_prob(jnp.zeros((4,), jnp.int32))  # and have the batch shape
    with pytest.raises(TypeError, match="logits has dtype int32"):
        Categorical(jnp.zeros((3, 4), jnp.int32)).entropy()
    with pytest.raises(ValueError, match="trailing action axis"):
        Categorical(jnp.zeros(())).entropy()


# ----------------------------------------------------------------------------
# DiagGaussian
# ----------------------------------------------------------------------------


def _gaussian_case(batch, dim, state_dependent, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    mean = jax.random.normal(k1, batch + (dim,))
    log_std_shape = batch + (dim,) if state_dependent else (dim,)
    log_std = 0.5 * jax.random.normal(k2, log_std_shape)
    actions = mean + 2.0 * jax.random.normal(k3, batch + (dim,))
    return mean, log_std, actions


def _gaussian_stats(mean, log_std, actions):
    dist = DiagGaussian(mean, log_std)
    return dist.log_prob(actions), dist.entropy()


@pytest.mark.parametrize(
    "batch, state_dependent, variant",
    [((7,), True, "plain"), ((7,), False, "plain"), ((2, 3), True, "plain"),
     ((2, 3), False, "jit"), ((7,), True, "jit"), ((2, 3), True, "vmap"), ((7,), False, "vmap")],
)
def test_gaussian_log_prob_entropy_match_scipy(batch, state_dependent, variant):
    mean, log_std, actions = _gaussian_case(batch, 3, state_dependent)
    std = np.broadcast_to(np.exp(np.asarray(log_std, np.float64)), mean.shape)
    ref_log_prob = stats.norm.logpdf(np.asarray(actions), np.asarray(mean), std).sum(-1)
    ref_entropy = stats.norm.entropy(scale=std).sum(-1)
    if variant == "vmap" and not state_dependent:
        # A shared log_std is closed over, not mapped.
        log_prob, entropy = jax.vmap(lambda m, a: _gaussian_stats(m, log_std, a))(mean, actions)
    else:
        log_prob, entropy = _apply(variant, _gaussian_stats, mean, log_std, actions)
    _assert_close("gaussian log_prob", log_prob, ref_log_prob, tol=1e-5, rtol=1e-6)
    _assert_close("gaussian entropy", entropy, ref_entropy)


def test_gaussian_closed_form_literals():
    # Standard normal in 2-D at the origin: log p = -log(2π), H = 1 + log(2π).
    dist = DiagGaussian(jnp.zeros((1, 2)), jnp.zeros((2,)))
    _assert_close("gaussian literal log_prob", dist.log_prob(jnp.zeros((1, 2))),
                  [-math.log(2 * math.pi)])
    _assert_close("gaussian literal entropy", dist.entropy(), [1 + math.log(2 * math.pi)])
    # 1-D, σ = 2, a - μ = 2: log p = -½ - log 2 - ½ log 2π.
    dist = DiagGaussian(jnp.array([1.0]), jnp.array([math.log(2.0)]))
    _assert_close("gaussian literal log_prob", dist.log_prob(jnp.array([3.0])),
                  -0.5 - math.log(2.0) - 0.5 * math.log(2 * math.pi))


def test_gaussian_sample_moments():
    mean = jnp.array([1.0, -2.0, 0.5])
    std = np.array([0.5, 2.0, 1.0])
    dist = DiagGaussian(mean, jnp.log(jnp.asarray(std, jnp.float32)))
    n = 100_000
    samples = np.asarray(jax.jit(jax.vmap(dist.sample))(jax.random.split(jax.random.PRNGKey(9), n)))
    assert samples.shape == (n, 3)
    # Standard errors: σ / sqrt(n) <= 0.0063 for the mean, σ / sqrt(2n) <= 0.0045 for the std.
    _assert_close("gaussian sample mean", samples.mean(0), mean, tol=0.03)
    _assert_close("gaussian sample std", samples.std(0), std, tol=0.0, rtol=0.015)
    corr = np.corrcoef(samples.T)
    _assert_close("gaussian sample correlation", corr, np.eye(3), tol=0.02)


def test_gaussian_batched_sample_and_mode():
    mean = jnp.broadcast_to(jnp.array([3.0, -1.0]), (4, 5, 2))
    dist = DiagGaussian(mean, jnp.array([-1.0, 0.0]))
    key = jax.random.PRNGKey(10)
    actions, log_probs = dist.sample_and_log_prob(key)
    assert actions.shape == (4, 5, 2) and log_probs.shape == (4, 5)
    np.testing.assert_array_equal(actions, dist.sample(key))
    _assert_close("gaussian sample_and_log_prob", log_probs, dist.log_prob(actions))
    assert not np.allclose(actions[0, 0], actions[0, 1])  # independent noise per element
    np.testing.assert_array_equal(dist.mode(), mean)
    # The mode has the largest density.
    assert np.all(np.asarray(dist.log_prob(dist.mode())) >= np.asarray(log_probs))


@pytest.mark.parametrize("state_dependent", [True, False])
def test_gaussian_log_prob_gradients_analytic(state_dependent):
    mean, log_std, actions = _gaussian_case((6,), 3, state_dependent, seed=1)

    def total_log_prob(m, s):
        return jnp.sum(DiagGaussian(m, s).log_prob(actions))

    g_mean, g_log_std = jax.jit(jax.grad(total_log_prob, argnums=(0, 1)))(mean, log_std)
    sigma = np.exp(np.broadcast_to(np.asarray(log_std, np.float64), mean.shape))
    diff = np.asarray(actions, np.float64) - np.asarray(mean, np.float64)
    # d log p / dμ = (a - μ) / σ²;  d log p / d log σ = ((a - μ) / σ)² - 1.
    expected_log_std = (diff / sigma) ** 2 - 1.0
    if not state_dependent:
        expected_log_std = expected_log_std.sum(0)
    _assert_close("gaussian grad mean", g_mean, diff / sigma**2, tol=1e-4, rtol=1e-5)
    _assert_close("gaussian grad log_std", g_log_std, expected_log_std, tol=1e-4, rtol=1e-5)
    # d H / d log σ = 1 per component (summed over the batch when shared).
    g_ent = jax.jit(jax.grad(lambda s: jnp.sum(DiagGaussian(mean, s).entropy())))(log_std)
    _assert_close("gaussian grad entropy", g_ent, np.full(log_std.shape, 1.0 if
                                                          state_dependent else 6.0))
    # Reparametrised samples carry gradients to the mean (d a / d μ = 1).
    g_sample = jax.jit(jax.grad(lambda m: jnp.sum(DiagGaussian(m, log_std).sample(
        jax.random.PRNGKey(0)))))(mean)
    _assert_close("gaussian grad sample", g_sample, np.ones(mean.shape))


def test_gaussian_log_prob_gradient_matches_finite_differences():
    mean = np.array([0.3, -1.2], np.float64)
    log_std = np.array([-0.4, 0.7], np.float64)
    action = np.array([1.0, 0.5], np.float64)

    def ref(m, s):
        return stats.norm.logpdf(action, m, np.exp(s)).sum()

    g_mean, g_log_std = jax.jit(jax.grad(lambda m, s: DiagGaussian(m, s).log_prob(
        jnp.asarray(action, jnp.float32)), argnums=(0, 1)))(
        jnp.asarray(mean, jnp.float32), jnp.asarray(log_std, jnp.float32))
    h = 1e-6
    eye = np.eye(2) * h
    fd_mean = [(ref(mean + e, log_std) - ref(mean - e, log_std)) / (2 * h) for e in eye]
    fd_log_std = [(ref(mean, log_std + e) - ref(mean, log_std - e)) / (2 * h) for e in eye]
    _assert_close("gaussian grad (finite differences)", g_mean, fd_mean, tol=1e-5)
    _assert_close("gaussian grad (finite differences)", g_log_std, fd_log_std, tol=1e-5)


def test_gaussian_extreme_parameters_are_finite():
    mean = jnp.array([[0.0, 0.0], [1e3, -1e3]])
    log_std = jnp.array([[-20.0, 2.0], [-20.0, -20.0]])
    actions = jnp.array([[1.0, 100.0], [1e3 + 1.0, -1e3]])

    def total(m, s):
        return jnp.sum(DiagGaussian(m, s).log_prob(actions))

    log_prob, entropy = jax.jit(_gaussian_stats)(mean, log_std, actions)
    assert np.all(np.isfinite(log_prob)) and log_prob[0] < -1e15
    assert np.all(np.isfinite(entropy))
    grads = jax.jit(jax.grad(total, argnums=(0, 1)))(mean, log_std)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_gaussian_kl_divergence():
    m0, s0, _ = _gaussian_case((4,), 3, True, seed=2)
    m1, s1, _ = _gaussian_case((4,), 3, True, seed=3)
    v0 = np.exp(2 * np.asarray(s0, np.float64))
    v1 = np.exp(2 * np.asarray(s1, np.float64))
    d = np.asarray(m0, np.float64) - np.asarray(m1, np.float64)
    expected = 0.5 * np.sum(np.log(v1 / v0) + (v0 + d**2) / v1 - 1.0, -1)
    _assert_close("gaussian kl", DiagGaussian(m0, s0).kl_divergence(DiagGaussian(m1, s1)),
                  expected, tol=1e-5, rtol=1e-6)
    _assert_close("gaussian kl self", DiagGaussian(m0, s0).kl_divergence(DiagGaussian(m0, s0)),
                  np.zeros(4))


def test_gaussian_input_checks():
    with pytest.raises(ValueError, match="does not broadcast"):
        DiagGaussian(jnp.zeros((3,)), jnp.zeros((2, 3))).entropy()
    with pytest.raises(ValueError, match=r"actions has shape \(3,\) but mean has \(2, 3\)"):
        DiagGaussian(jnp.zeros((2, 3)), jnp.zeros((3,))).log_prob(jnp.zeros((3,)))
    with pytest.raises(TypeError, match="actions has dtype int32; pass floating-point"):
        DiagGaussian(jnp.zeros((3,)), jnp.zeros((3,))).log_prob(jnp.zeros((3,), jnp.int32))


# ----------------------------------------------------------------------------
# Pytree behaviour
# ----------------------------------------------------------------------------


def test_distributions_are_pytrees_through_jit_vmap_and_scan():
    logits = jax.random.normal(jax.random.PRNGKey(11), (5, 3))
    cat = jax.jit(lambda lg: Categorical(lg))(logits)
    assert isinstance(cat, Categorical)
    assert len(jax.tree.leaves(cat)) == 1

    gauss = jax.jit(lambda m: DiagGaussian(m, jnp.zeros((2,))))(jnp.ones((5, 2)))
    assert isinstance(gauss, DiagGaussian) and gauss.log_std.shape == (2,)

    # A distribution can be an argument of jitted and vmapped functions.
    actions = jnp.array([0, 1, 2, 0, 1], jnp.int32)
    _assert_close("pytree jit arg", jax.jit(lambda d, a: d.log_prob(a))(cat, actions),
                  cat.log_prob(actions))
    _assert_close("pytree vmap arg", jax.vmap(lambda d, a: d.log_prob(a))(cat, actions),
                  cat.log_prob(actions))
    keys = jax.random.split(jax.random.PRNGKey(12), 5)
    per_element = jax.vmap(lambda d, k: d.sample(k))(cat, keys)
    assert per_element.shape == (5,) and per_element.dtype == jnp.int32

    # ... and the carry or output of a scan.
    def step(dist, _):
        new = Categorical(dist.logits * 0.5)
        return new, new.entropy()

    final, entropies = jax.lax.scan(step, cat, None, length=3)
    assert isinstance(final, Categorical) and entropies.shape == (3, 5)
    _assert_close("pytree scan", final.logits, np.asarray(logits) * 0.125)


def test_out_of_range_discrete_actions_have_no_finite_log_probability():
    """An action outside [0, num_actions) used to get log-probability 0 (probability 1)."""
    dist = Categorical(jnp.zeros((2,)))
    assert np.isnan(dist.log_prob(jnp.int32(5)))
    assert np.isnan(jax.jit(dist.log_prob)(jnp.int32(-1)))
    batch = Categorical(jnp.zeros((3, 2)))
    log_p = batch.log_prob(jnp.array([0, 2, 1], jnp.int32))
    np.testing.assert_array_equal(np.isnan(log_p), [False, True, False])
    np.testing.assert_allclose(np.asarray(log_p)[[0, 2]], np.log(0.5), rtol=1e-6)
    with pytest.raises(ValueError, match=r"actions holds 5, outside \[0, 2\)"):
        dist.check(jnp.int32(5))
    dist.check(jnp.int32(1))  # in range: no error

    from jax.experimental import checkify

    checked = checkify.checkify(jax.jit(lambda a: dist.check(a)))
    err, _ = checked(jnp.int32(3))
    assert "outside [0, 2)" in str(err.get())
    err, _ = checked(jnp.int32(0))
    assert err.get() is None
