"""Action distributions for actor-critic policies.

Each distribution is an immutable `NamedTuple` of arrays with methods, so it is
a pytree: it can be returned from and passed into `jax.jit`, `jax.vmap` and
`jax.lax.scan` like any other array container. The batch shape is made of the
leading dimensions of the parameters; the last dimension indexes actions
(`Categorical`) or action components (`DiagGaussian`, `TanhGaussian`).

  * `Categorical(logits)`: logits `[..., num_actions]`, actions `int32 [...]`.
  * `DiagGaussian(mean, log_std)`: mean `[..., action_dim]`, `log_std`
    broadcastable to `mean`, actions `[..., action_dim]`.
  * `TanhGaussian(mean, log_std)`: a diagonal Gaussian over pre-tanh values
    `u` squashed by `a = tanh(u)` (SAC's policy); same parameter shapes as
    `DiagGaussian`, actions `[..., action_dim]` in (-1, 1), to be rescaled to
    the environment's bounds by the caller. Its entropy has no closed form;
    `entropy_estimate(key)` gives a one-sample estimate.

Log-probabilities and entropies have the batch shape `[...]`. All computations
go through log-space (`log_softmax`, `log_std`), so that very large or very
negative logits (masked actions, e.g. `-1e9` or `-inf`) give finite entropies
and finite gradients. `TanhGaussian` computes the log-determinant of the
squashing Jacobian from the pre-tanh value in a softplus form, so that it stays
finite when `tanh(u)` rounds to ±1.
"""

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Categorical",
    "DiagGaussian",
    "TanhGaussian",
]


Array = chex.Array
PRNGKey = chex.PRNGKey

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _check_actions(actions: Array, logits: Array) -> Array:
    """Discrete actions as int32 of the logits' batch shape, or an error naming `actions`."""
    dtype = jnp.result_type(actions)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"Categorical.log_prob: actions has dtype {dtype}; pass integer action indices "
            "(e.g. actions.astype(jnp.int32))"
        )
    if jnp.shape(actions) != logits.shape[:-1]:
        raise ValueError(
            f"Categorical.log_prob: actions has shape {jnp.shape(actions)} but the logits "
            f"{logits.shape} have batch shape {logits.shape[:-1]}; pass one action per batch "
            "element"
        )
    return jnp.asarray(actions).astype(jnp.int32)


def _same_shape(fn: str, name: str, x: Array, like_name: str, like: Array) -> None:
    """Raises `ValueError` naming `name` unless `x` has the shape of `like`."""
    if jnp.shape(x) != jnp.shape(like):
        raise ValueError(
            f"{fn}: {name} has shape {jnp.shape(x)} but {like_name} has {jnp.shape(like)}; "
            f"pass {name} of shape {jnp.shape(like)}"
        )


def _float_actions(fn: str, actions: Array, mean: Array) -> None:
    """Raises naming `actions` unless they are floating point and shaped like `mean`."""
    dtype = jnp.result_type(actions)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{fn}: actions has dtype {dtype}; pass floating-point actions")
    _same_shape(fn, "actions", actions, "mean", mean)


def _check_params(params: Array, name: str) -> None:
    """Static checks on a distribution parameter: float dtype, rank >= 1."""
    dtype = jnp.result_type(params)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} has dtype {dtype}; pass floating-point {name}")
    if jnp.ndim(params) < 1:
        raise ValueError(
            f"{name} must have shape [..., n] with a trailing action axis; got shape "
            f"{jnp.shape(params)}. Add a trailing axis, e.g. {name}[None]."
        )


class Categorical(NamedTuple):
    """Categorical distribution over `num_actions` actions, parametrised by logits.

      π(a) = softmax(logits)ₐ = exp(logitsₐ) / Σ_b exp(logits_b).

    Attributes:
      logits: unnormalised log-probabilities, shape `[..., num_actions]`, float.
    """

    logits: Array

    def all_log_probs(self) -> Array:
        """Normalised log-probabilities, log π(·) = log_softmax(logits).

        Returns:
          log π(·), shape `[..., num_actions]`, dtype of `logits`.
        """
        _check_params(self.logits, "logits")
        return jax.nn.log_softmax(self.logits, axis=-1)

    def probs(self) -> Array:
        """Probabilities π(·) = softmax(logits), shape `[..., num_actions]`."""
        _check_params(self.logits, "logits")
        return jax.nn.softmax(self.logits, axis=-1)

    def sample(self, key: PRNGKey) -> Array:
        """Draws one action per batch element, `a ~ π` (as `jax.random.categorical`).

        Args:
          key: a PRNG key.

        Returns:
          Actions, shape `[...]`, int32.
        """
        return self.sample_from_noise(self.noise(key))

    def noise(self, key: PRNGKey) -> Array:
        """The standard Gumbel noise `sample(key)` draws, shape `[..., num_actions]`.

        It depends only on the shape and dtype of `logits`, so it can be drawn ahead of time
        (for every step of a rollout at once); `sample_from_noise(noise(key)) == sample(key)`.
        """
        return jax.random.gumbel(key, self.logits.shape, self.logits.dtype)

    def sample_from_noise(self, noise: Array) -> Array:
        """The Gumbel-max sample argmaxₐ (noiseₐ + logitsₐ), shape `[...]`, int32.

        Args:
          noise: standard Gumbel noise shaped like `logits` (see `noise`).
        """
        _check_params(self.logits, "logits")
        _same_shape("Categorical.sample_from_noise", "noise", noise, "logits", self.logits)
        return jnp.argmax(noise + self.logits, axis=-1).astype(jnp.int32)

    def log_prob(self, actions: Array) -> Array:
        """Log-probability of actions, log π(a) = log_softmax(logits)ₐ.

        An action outside `[0, num_actions)` has no probability under this distribution: its
        log-probability is NaN, never a finite number (`check(actions)` raises instead).

        Args:
          actions: action indices in `[0, num_actions)`, shape `[...]` (the logits' batch
            shape), integer.

        Returns:
          log π(a), shape `[...]`, dtype of `logits`.

        Raises:
          TypeError / ValueError: `actions` is not an integer array of the batch shape.
        """
        _check_params(self.logits, "logits")
        actions = _check_actions(actions, self.logits)
        log_p = self.all_log_probs()
        # A masked sum rather than a gather: the same value (one term, the rest exact zeros),
        # and its gradient is elementwise, where a gather's is a scatter (separate kernels).
        index = jax.lax.broadcasted_iota(jnp.int32, log_p.shape, log_p.ndim - 1)
        onehot = index == actions[..., None]
        total = jnp.sum(jnp.where(onehot, log_p, 0.0), axis=-1)
        return jnp.where(self._in_range(actions), total, jnp.nan)

    def _in_range(self, actions: Array) -> Array:
        return (actions >= 0) & (actions < self.logits.shape[-1])

    def check(self, actions: Array) -> None:
        """Raises when an action lies outside `[0, num_actions)`.

        Concrete `actions` raise a `ValueError` naming the first bad value; traced ones go
        through `jax.experimental.checkify.check`, so wrap the caller with
        `checkify.checkify(...)` to get the error out of a jitted function.
        """
        actions = _check_actions(actions, self.logits)
        n = self.logits.shape[-1]
        value = None if isinstance(actions, jax.core.Tracer) else np.asarray(actions)
        if value is not None:
            bad = value[(value < 0) | (value >= n)]
            if bad.size:
                raise ValueError(
                    f"Categorical.check: actions holds {int(bad.flat[0])}, outside "
                    f"[0, {n}) for logits with {n} actions; pass action indices in range"
                )
            return
        from jax.experimental import checkify

        checkify.check(jnp.all(self._in_range(actions)),
                       f"Categorical: actions outside [0, {n})")

    def entropy(self) -> Array:
        """Entropy, H(π) = -Σₐ π(a) log π(a).

        Actions with zero probability contribute zero (the limit of p log p as
        p → 0), also for logits of `-inf`, and they pass zero gradient.

        Returns:
          H(π), shape `[...]`, dtype of `logits`.
        """
        _check_params(self.logits, "logits")
        log_p = self.all_log_probs()
        p = jnp.exp(log_p)
        # Masking log p (not the product) keeps both the value and the gradient
        # finite where p == 0 and log p == -inf.
        safe_log_p = jnp.where(p > 0, log_p, jnp.zeros_like(log_p))
        return -jnp.sum(p * safe_log_p, axis=-1)

    def mode(self) -> Array:
        """Most likely action, argmaxₐ logitsₐ (the first one on ties), shape `[...]`, int32."""
        _check_params(self.logits, "logits")
        return jnp.argmax(self.logits, axis=-1).astype(jnp.int32)

    def sample_and_log_prob(self, key: PRNGKey) -> tuple[Array, Array]:
        """Draws `a ~ π` and returns `(a, log π(a))`, shapes `[...]` (int32) and `[...]`."""
        return self.sample_and_log_prob_from_noise(self.noise(key))

    def sample_and_log_prob_from_noise(self, noise: Array) -> tuple[Array, Array]:
        """`sample_and_log_prob` with the noise given (see `noise`)."""
        actions = self.sample_from_noise(noise)
        return actions, self.log_prob(actions)

    def kl_divergence(self, other: "Categorical") -> Array:
        """KL(self ‖ other) = Σₐ π(a) (log π(a) - log q(a)), shape `[...]`.

        Args:
          other: a `Categorical` with logits of the same shape as `self.logits`.
        """
        _same_shape("Categorical.kl_divergence", "other.logits", other.logits, "logits", self.logits)
        log_p = self.all_log_probs()
        log_q = other.all_log_probs()
        p = jnp.exp(log_p)
        diff = jnp.where(p > 0, log_p - log_q, jnp.zeros_like(log_p))
        return jnp.sum(p * diff, axis=-1)


class DiagGaussian(NamedTuple):
    """Gaussian distribution with diagonal covariance.

      π(a) = Πᵢ N(aᵢ; μᵢ, σᵢ²),    σ = exp(log_std).

    Attributes:
      mean: μ, shape `[..., action_dim]`, float.
      log_std: log σ, broadcastable to `mean`: `[..., action_dim]` for a
        state-dependent standard deviation or `[action_dim]` for a
        state-independent one.
    """

    mean: Array
    log_std: Array

    def _log_std(self) -> Array:
        """`log_std` explicitly broadcast to the shape of `mean`."""
        _check_params(self.mean, "mean")
        if not jnp.issubdtype(jnp.result_type(self.log_std), jnp.floating):
            raise TypeError(f"log_std has dtype {jnp.result_type(self.log_std)}; pass float log_std")
        if jnp.ndim(self.log_std) > jnp.ndim(self.mean):
            raise ValueError(
                f"log_std of shape {jnp.shape(self.log_std)} does not broadcast to mean of "
                f"shape {jnp.shape(self.mean)}; pass log_std of shape [action_dim] or "
                "[..., action_dim] matching mean."
            )
        return jnp.broadcast_to(self.log_std, self.mean.shape).astype(self.mean.dtype)

    def stddev(self) -> Array:
        """Standard deviation σ = exp(log_std), shape `[..., action_dim]`."""
        return jnp.exp(self._log_std())

    def sample(self, key: PRNGKey) -> Array:
        """Draws `a = μ + σ ε` with `ε ~ N(0, I)` (reparametrised).

        Args:
          key: a PRNG key.

        Returns:
          Actions, shape `[..., action_dim]`, dtype of `mean`.
        """
        return self.sample_from_noise(self.noise(key))

    def noise(self, key: PRNGKey) -> Array:
        """The standard normal ε `sample(key)` draws, shape `[..., action_dim]`.

        It depends only on the shape and dtype of `mean`, so it can be drawn ahead of time;
        `sample_from_noise(noise(key)) == sample(key)`.
        """
        return jax.random.normal(key, self.mean.shape, self.mean.dtype)

    def sample_from_noise(self, noise: Array) -> Array:
        """`a = μ + σ ε` for the given ε (see `noise`), shape `[..., action_dim]`."""
        _same_shape(type(self).__name__ + ".sample_from_noise", "noise", noise, "mean", self.mean)
        return self.mean + self.stddev() * noise

    def log_prob(self, actions: Array) -> Array:
        """Log-density of actions, summed over the action components.

          log π(a) = Σᵢ [-½ ((aᵢ - μᵢ) / σᵢ)² - log σᵢ - ½ log 2π].

        Args:
          actions: shape `[..., action_dim]`, same as `mean`, float.

        Returns:
          log π(a), shape `[...]`, dtype of `mean`.
        """
        log_std = self._log_std()
        _float_actions(type(self).__name__ + ".log_prob", actions, self.mean)
        z = (actions.astype(self.mean.dtype) - self.mean) * jnp.exp(-log_std)
        return jnp.sum(-0.5 * jnp.square(z) - log_std - _HALF_LOG_2PI, axis=-1)

    def entropy(self) -> Array:
        """Differential entropy, H(π) = Σᵢ [log σᵢ + ½ (1 + log 2π)].

        Returns:
          H(π), shape `[...]`, dtype of `mean`.
        """
        log_std = self._log_std()
        return jnp.sum(log_std + (0.5 + _HALF_LOG_2PI), axis=-1)

    def mode(self) -> Array:
        """Most likely action, μ, shape `[..., action_dim]`."""
        _check_params(self.mean, "mean")
        return self.mean

    def sample_and_log_prob(self, key: PRNGKey) -> tuple[Array, Array]:
        """Draws `a ~ π` and returns `(a, log π(a))`, shapes `[..., action_dim]` and `[...]`."""
        return self.sample_and_log_prob_from_noise(self.noise(key))

    def sample_and_log_prob_from_noise(self, noise: Array) -> tuple[Array, Array]:
        """`sample_and_log_prob` with the noise given (see `noise`)."""
        actions = self.sample_from_noise(noise)
        return actions, self.log_prob(actions)

    def kl_divergence(self, other: "DiagGaussian") -> Array:
        """KL(self ‖ other), summed over the action components, shape `[...]`.

          KL = Σᵢ [log σ'ᵢ - log σᵢ + (σᵢ² + (μᵢ - μ'ᵢ)²) / (2 σ'ᵢ²) - ½].

        Args:
          other: a `DiagGaussian` with a mean of the same shape as `self.mean`.
        """
        _same_shape("DiagGaussian.kl_divergence", "other.mean", other.mean, "mean", self.mean)
        log_std, other_log_std = self._log_std(), other._log_std()
        var_ratio = jnp.exp(2.0 * (log_std - other_log_std))
        mean_term = jnp.square((self.mean - other.mean) * jnp.exp(-other_log_std))
        return jnp.sum(
            other_log_std - log_std + 0.5 * (var_ratio + mean_term) - 0.5, axis=-1
        )


def _tanh_log_det_jacobian(u: Array) -> Array:
    """log |d tanh(u) / du| = log(1 - tanh(u)²), elementwise, computed from u.

    Uses the identity 1 - tanh(u)² = 4 / (e^u + e^-u)², i.e.

      log(1 - tanh(u)²) = 2 (log 2 - u - softplus(-2u)),

    which is finite (about -2|u|) and has the finite derivative -2 tanh(u) for
    every finite u, where `log(1 - tanh(u)**2)` would be `log(0) = -inf` as soon
    as tanh(u) rounds to ±1 (|u| ≳ 9 in float32).
    """
    return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))


class TanhGaussian(NamedTuple):
    """Diagonal Gaussian squashed by tanh into (-1, 1) (the SAC policy).

      u ~ N(μ, diag σ²),  a = tanh(u),  σ = exp(log_std),
      log π(a) = Σᵢ [log N(uᵢ; μᵢ, σᵢ²) - log(1 - tanh(uᵢ)²)],   u = atanh(a).

    The second term is the change of variables through tanh; it is computed from
    the pre-tanh value u in the stable form `2 (log 2 - u - softplus(-2u))`. The
    caller rescales actions from (-1, 1) to the environment's bounds (an affine
    map, whose constant log-determinant does not change any gradient).

    There is no closed-form entropy, hence no `entropy()` method:
    `entropy_estimate(key)` returns the unbiased one-sample estimate -log π(a).

    Attributes:
      mean: μ, the mean of the pre-tanh Gaussian, shape `[..., action_dim]`, float.
      log_std: log σ of the pre-tanh Gaussian, broadcastable to `mean`:
        `[..., action_dim]` (state-dependent) or `[action_dim]` (state-independent).
    """

    mean: Array
    log_std: Array

    def pre_tanh(self) -> DiagGaussian:
        """The Gaussian over pre-tanh values u, `DiagGaussian(mean, log_std)`."""
        return DiagGaussian(self.mean, self.log_std)

    def clip_eps(self) -> float:
        """Margin kept from ±1 when inverting tanh: `finfo(dtype).eps`.

        `log_prob` clips actions to `[-1 + eps, 1 - eps]` before `atanh`. For
        float32 eps = 2⁻²³ ≈ 1.19e-7, so the largest action is 1 - 2⁻²³ (exactly
        representable, strictly below 1), whose atanh is ≈ 8.3: finite, as are
        the log-probability and its gradients. An action of exactly ±1 (a
        sample whose tanh rounded to ±1) is treated as ±(1 - eps).
        """
        _check_params(self.mean, "mean")
        return float(jnp.finfo(self.mean.dtype).eps)

    def stddev(self) -> Array:
        """Pre-tanh standard deviation σ = exp(log_std), shape `[..., action_dim]`."""
        return self.pre_tanh().stddev()

    def log_prob_pre_tanh(self, u: Array) -> Array:
        """Log-density of the action tanh(u), given its pre-tanh value u.

          log π(tanh(u)) = Σᵢ [log N(uᵢ; μᵢ, σᵢ²) - 2 (log 2 - uᵢ - softplus(-2uᵢ))].

        Args:
          u: pre-tanh values, shape `[..., action_dim]`, same as `mean`, float.

        Returns:
          log π(tanh(u)), shape `[...]`, dtype of `mean`.
        """
        u = jnp.asarray(u)
        log_n = self.pre_tanh().log_prob(u)
        return log_n - jnp.sum(_tanh_log_det_jacobian(u.astype(self.mean.dtype)), axis=-1)

    def log_prob(self, actions: Array) -> Array:
        """Log-density of actions in [-1, 1], summed over the action components.

        Actions are clipped to `[-1 + eps, 1 - eps]` (see `clip_eps`), mapped
        back to u = atanh(a), and scored with `log_prob_pre_tanh(u)`. Prefer
        `sample_and_log_prob` for the policy's own samples: it scores the exact
        u, without the round trip through tanh and atanh.

        Args:
          actions: shape `[..., action_dim]`, same as `mean`, float, in [-1, 1].

        Returns:
          log π(a), shape `[...]`, dtype of `mean`.
        """
        _check_params(self.mean, "mean")
        _float_actions(type(self).__name__ + ".log_prob", actions, self.mean)
        eps = self.clip_eps()
        a = jnp.clip(actions.astype(self.mean.dtype), -1.0 + eps, 1.0 - eps)
        return self.log_prob_pre_tanh(jnp.arctanh(a))

    def sample_and_log_prob(self, key: PRNGKey) -> tuple[Array, Array]:
        """Draws `a = tanh(μ + σ ε)`, `ε ~ N(0, I)` (reparametrised) and its log-density.

        The log-density is computed from ε and u = μ + σ ε directly:

          log π(a) = Σᵢ [-½ εᵢ² - log σᵢ - ½ log 2π - 2 (log 2 - uᵢ - softplus(-2uᵢ))],

        so that it and its gradients (with respect to μ and log σ, along the
        reparametrised path) stay finite even where tanh(u) rounds to ±1.

        Args:
          key: a PRNG key.

        Returns:
          `(a, log π(a))`: actions `[..., action_dim]` in [-1, 1] (float32 rounds
          tanh(u) to ±1 once |u| ≳ 9) and log-densities `[...]`, dtype of `mean`.
        """
        return self.sample_and_log_prob_from_noise(self.noise(key))

    def noise(self, key: PRNGKey) -> Array:
        """The standard normal ε `sample_and_log_prob(key)` draws, shape `[..., action_dim]`.

        `sample_and_log_prob_from_noise(noise(key)) == sample_and_log_prob(key)`.
        """
        return self.pre_tanh().noise(key)

    def sample_and_log_prob_from_noise(self, noise: Array) -> tuple[Array, Array]:
        """`sample_and_log_prob` with the noise ε given (see `noise`)."""
        _same_shape(type(self).__name__ + ".sample_from_noise", "noise", noise, "mean", self.mean)
        log_std = self.pre_tanh()._log_std()
        u = self.mean + jnp.exp(log_std) * noise
        log_n = jnp.sum(-0.5 * jnp.square(noise) - log_std - _HALF_LOG_2PI, axis=-1)
        log_prob = log_n - jnp.sum(_tanh_log_det_jacobian(u), axis=-1)
        return jnp.tanh(u), log_prob

    def sample(self, key: PRNGKey) -> Array:
        """Draws `a = tanh(μ + σ ε)` with `ε ~ N(0, I)` (reparametrised).

        Args:
          key: a PRNG key.

        Returns:
          Actions, shape `[..., action_dim]`, in [-1, 1], dtype of `mean`.
        """
        return self.sample_and_log_prob(key)[0]

    def mode(self) -> Array:
        """The greedy action tanh(μ), shape `[..., action_dim]`.

        (The image of the pre-tanh mode; the density of `a` itself may peak
        elsewhere, but tanh(μ) is the deterministic action SAC evaluates with.)
        """
        _check_params(self.mean, "mean")
        return jnp.tanh(self.mean)

    def entropy_estimate(self, key: PRNGKey) -> Array:
        """One-sample Monte Carlo estimate of the entropy, -log π(a) with a ~ π.

        Unbiased and reparametrised (differentiable in μ and log σ), but noisy.

        Args:
          key: a PRNG key.

        Returns:
          -log π(a), shape `[...]`, dtype of `mean`.
        """
        return -self.sample_and_log_prob(key)[1]
