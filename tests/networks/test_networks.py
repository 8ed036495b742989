"""Actor-critic networks: shapes, heads, initialisation, the detached critic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax.cpu.dense import dense
from acjax.distributions import Categorical, DiagGaussian
from acjax.envs import EnvSpec
from acjax.networks import NetworkConfig, make_actor_critic

DISCRETE = EnvSpec("D", (4,), True, 3, None, None, 10)
CONTINUOUS = EnvSpec("C", (5,), False, 2, (-1.0, -1.0), (1.0, 1.0), 10)
IMAGE = EnvSpec("I", (10, 10, 4), True, 6, None, None, 10)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("spec", [DISCRETE, CONTINUOUS, IMAGE], ids=["disc", "cont", "image"])
@pytest.mark.parametrize("batch", [(), (7,), (3, 5)])
def test_shapes(spec, shared, batch):
    net = make_actor_critic(spec, NetworkConfig(hidden_sizes=(32, 16), shared=shared))
    obs = jnp.ones(batch + spec.obs_shape)
    params = net.init(jax.random.PRNGKey(0), jnp.ones(spec.obs_shape))
    dist, value = net.policy_and_value(params, obs)
    assert value.shape == batch and value.dtype == jnp.float32
    np.testing.assert_allclose(net.value(params, obs), value, rtol=1e-6)
    if spec.discrete:
        assert isinstance(dist, Categorical) and dist.logits.shape == batch + (spec.num_actions,)
        action = dist.sample(jax.random.PRNGKey(1))
        assert action.shape == batch
    else:
        assert isinstance(dist, DiagGaussian) and dist.mean.shape == batch + (spec.num_actions,)
        action = dist.sample(jax.random.PRNGKey(1))
        assert action.shape == batch + (spec.num_actions,)
    assert dist.log_prob(action).shape == batch


def test_separate_networks_have_actor_and_critic_params():
    net = make_actor_critic(DISCRETE, NetworkConfig(hidden_sizes=(8,), critic_hidden_sizes=(12, 6)))
    params = net.init(jax.random.PRNGKey(0), jnp.ones((4,)))
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): v.shape
            for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    assert flat["actor_trunk/Dense_0/kernel"] == (4, 8)
    assert flat["critic_trunk/Dense_0/kernel"] == (4, 12)
    assert flat["critic_trunk/Dense_1/kernel"] == (12, 6)


def test_initial_policy_is_near_uniform_and_log_std_init():
    net = make_actor_critic(DISCRETE, NetworkConfig())
    params = net.init(jax.random.PRNGKey(0), jnp.ones((4,)))
    obs = jax.random.normal(jax.random.PRNGKey(1), (256, 4))
    probs = jax.nn.softmax(net.policy(params, obs).logits)
    np.testing.assert_allclose(probs, 1 / 3, atol=0.02)  # head gain 0.01
    cont = make_actor_critic(CONTINUOUS, NetworkConfig(init_log_std=-0.5))
    cparams = cont.init(jax.random.PRNGKey(0), jnp.ones((5,)))
    dist = cont.policy(cparams, jnp.ones((3, 5)))
    np.testing.assert_allclose(dist.log_std, -0.5)
    dep = make_actor_critic(CONTINUOUS, NetworkConfig(log_std="state_dependent", init_log_std=0.2))
    dparams = dep.init(jax.random.PRNGKey(0), jnp.ones((5,)))
    dist = dep.policy(dparams, jax.random.normal(jax.random.PRNGKey(2), (3, 5)))
    np.testing.assert_allclose(dist.log_std, 0.2, atol=0.1)
    assert not np.allclose(dist.log_std[0], dist.log_std[1])  # depends on the state


def test_hidden_layers_are_orthogonal():
    net = make_actor_critic(DISCRETE, NetworkConfig(hidden_sizes=(64, 64)))
    params = net.init(jax.random.PRNGKey(0), jnp.ones((4,)))
    w = np.asarray(params["actor_trunk"]["Dense_1"]["kernel"])
    np.testing.assert_allclose(w.T @ w, 2.0 * np.eye(64), atol=1e-4)  # gain sqrt(2)


@pytest.mark.parametrize("detach", [False, True])
def test_detached_critic_does_not_train_the_trunk(detach):
    net = make_actor_critic(DISCRETE, NetworkConfig(hidden_sizes=(16,), shared=True,
                                                    detach_critic=detach))
    params = net.init(jax.random.PRNGKey(0), jnp.ones((4,)))
    obs = jax.random.normal(jax.random.PRNGKey(1), (8, 4))
    grads = jax.grad(lambda p: jnp.sum(net.value(p, obs) ** 2))(params)
    trunk_norm = sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads["trunk"]))
    head_norm = sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads["value_head"]))
    assert head_norm > 0
    assert (trunk_norm == 0.0) == detach
    # The policy still trains the trunk either way.
    pgrads = jax.grad(lambda p: jnp.sum(net.policy(p, obs).logits ** 2))(params)
    assert sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(pgrads["trunk"])) > 0


def test_network_config_errors():
    with pytest.raises(ValueError, match=r"network\.log_std='state_dependent' applies to "
                                         r"continuous action spaces; D has Discrete\(3\)"):
        NetworkConfig(log_std="state_dependent").validate(DISCRETE)
    with pytest.raises(ValueError, match="critic_hidden_sizes"):
        NetworkConfig(shared=True, critic_hidden_sizes=(8,)).validate(DISCRETE)
    NetworkConfig(log_std="state_dependent", init_log_std=0.0).validate(CONTINUOUS)


def _flax_module(spec, config):
    from acjax.networks import HeadSpec, SeparateActorCritic, SharedActorCritic

    head = HeadSpec(spec.discrete, spec.num_actions, config.log_std or "state_independent",
                    0.0 if config.init_log_std is None else float(config.init_log_std))
    if config.shared:
        return SharedActorCritic(tuple(config.hidden_sizes), config.activation, head,
                                 config.detach_critic)
    return SeparateActorCritic(tuple(config.hidden_sizes),
                               tuple(config.critic_hidden_sizes or config.hidden_sizes),
                               config.activation, head)


@pytest.mark.parametrize("spec, config", [
    (DISCRETE, NetworkConfig()),
    (DISCRETE, NetworkConfig(hidden_sizes=(), activation="relu")),
    (DISCRETE, NetworkConfig(hidden_sizes=(8,), critic_hidden_sizes=(12, 6), activation="gelu")),
    (DISCRETE, NetworkConfig(hidden_sizes=(16, 8), shared=True, activation="silu")),
    (DISCRETE, NetworkConfig(hidden_sizes=(16,), shared=True, detach_critic=True)),
    (CONTINUOUS, NetworkConfig(hidden_sizes=(16, 16), init_log_std=-0.5, activation="elu")),
    (CONTINUOUS, NetworkConfig(hidden_sizes=(16,), log_std="state_dependent", shared=True)),
    (IMAGE, NetworkConfig(hidden_sizes=(32,))),
], ids=["default", "linear", "critic-sizes", "shared", "detached", "gauss", "gauss-dep", "image"])
def test_forward_pass_equals_flax_apply(spec, config):
    """The networks' functions are the flax modules' `apply`, operation for operation: the
    same outputs exactly, and the same gradients up to float rounding (the dense layers'
    hand-written backward pass computes the same sums through other kernels)."""
    net = make_actor_critic(spec, config)
    module = _flax_module(spec, config)
    params = net.init(jax.random.PRNGKey(0), jnp.ones(spec.obs_shape))
    params = jax.tree.map(  # non-zero biases and log-stds, so every parameter matters
        lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(x.size), x.shape), params)
    obs = jax.random.normal(jax.random.PRNGKey(3), (2, 7) + spec.obs_shape)
    flat = obs.reshape((2, 7, -1))

    def ours(p):
        dist, value = net.policy_and_value(p, obs)
        loc = dist.logits if spec.discrete else jnp.concatenate([dist.mean, dist.log_std], -1)
        return loc, value, net.value(p, obs)

    def theirs(p):
        (loc, log_std), value = module.apply({"params": p}, flat)
        if not spec.discrete:
            loc = jnp.concatenate([loc, log_std], -1)
        return loc, value, module.apply({"params": p}, flat, method="value")

    for a, b in zip(jax.jit(ours)(params), jax.jit(theirs)(params), strict=True):
        np.testing.assert_array_equal(a, b)

    def scalar(fn):
        return lambda p: sum(jnp.sum(jnp.sin(x)) for x in fn(p))

    g_ours = jax.jit(jax.grad(scalar(ours)))(params)
    g_theirs = jax.jit(jax.grad(scalar(theirs)))(params)
    assert jax.tree.structure(g_ours) == jax.tree.structure(g_theirs)
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    if config.detach_critic:  # the value's gradient stops at the trunk
        grads = jax.grad(lambda p: jnp.sum(net.value(p, obs)))(params)
        assert all(not np.any(g) for g in jax.tree.leaves(grads["trunk"]))


@pytest.mark.parametrize("out_dim", [6, 1])
@pytest.mark.parametrize("x_shape", [(5,), (128, 7), (3, 4, 7)])
def test_dense_gradient_equals_autodiff_of_the_plain_layer(x_shape, out_dim):
    """`acjax.networks.dense`'s hand-written backward pass against JAX's autodiff of
    `x @ kernel + bias` (one sample, a batch, two batch axes; several outputs, or one as in a
    value head), also inside vmap."""
    in_dim = x_shape[-1]
    x = jax.random.normal(jax.random.PRNGKey(0), x_shape)
    kernel = jax.random.normal(jax.random.PRNGKey(1), (in_dim, out_dim))
    bias = jax.random.normal(jax.random.PRNGKey(2), (out_dim,))
    w = jax.random.normal(jax.random.PRNGKey(3), x_shape[:-1] + (out_dim,))

    def plain(x, k, b):
        return x @ k + jnp.reshape(b, (1,) * (x.ndim - 1) + (-1,))

    def objective(layer):
        return lambda x, k, b: jnp.sum(jnp.tanh(layer(x, k, b)) * w)

    np.testing.assert_array_equal(dense(x, kernel, bias), jax.jit(plain)(x, kernel, bias))
    ours = jax.jit(jax.grad(objective(dense), argnums=(0, 1, 2)))(x, kernel, bias)
    ref = jax.jit(jax.grad(objective(plain), argnums=(0, 1, 2)))(x, kernel, bias)
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Per-example gradients (vmap over the leading axis) take the same path.
    if len(x_shape) > 1:
        per_ex = jax.vmap(jax.grad(lambda x, k, b, w: jnp.sum(dense(x, k, b) * w), argnums=1),
                          in_axes=(0, None, None, 0))(x, kernel, bias, w)
        ref_ex = jax.vmap(jax.grad(lambda x, k, b, w: jnp.sum(plain(x, k, b) * w), argnums=1),
                          in_axes=(0, None, None, 0))(x, kernel, bias, w)
        np.testing.assert_allclose(per_ex, ref_ex, rtol=1e-5, atol=1e-5)
