"""Action distributions for actor-critic policies.

Each distribution is an immutable `NamedTuple` of arrays with methods, so it is
a pytree: it can be returned from and passed into `jax.jit`, `jax.vmap` and
`jax.lax.scan` like any other array container. The batch shape is made of the
leading dimensions of the parameters; the last dimension indexes actions
(`Categorical`) or action components (`DiagGaussian`).

  * `Categorical(logits)`: logits `[..., num_actions]`, actions `int32 [...]`.
  * `DiagGaussian(mean, log_std)`: mean `[..., action_dim]`, `log_std`
    broadcastable to `mean`, actions `[..., action_dim]`.

Log-probabilities and entropies have the batch shape `[...]`. All computations
go through log-space (`log_softmax`, `log_std`), so that very large or very
negative logits (masked actions, e.g. `-1e9` or `-inf`) give finite entropies
and finite gradients.
"""

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

Array = chex.Array
PRNGKey = chex.PRNGKey

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _check_params(params: Array, name: str) -> None:
    """Static checks on a distribution parameter: float dtype, rank >= 1."""
    chex.assert_type(params, float)
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
        """Draws one action per batch element, `a ~ π`.

        Args:
          key: a PRNG key.

        Returns:
          Actions, shape `[...]`, int32.
        """
        _check_params(self.logits, "logits")
        return jax.random.categorical(key, self.logits, axis=-1).astype(jnp.int32)

    def log_prob(self, actions: Array) -> Array:
        """Log-probability of actions, log π(a) = log_softmax(logits)ₐ.

        Args:
          actions: action indices in `[0, num_actions)`, shape `[...]`, integer.

        Returns:
          log π(a), shape `[...]`, dtype of `logits`.
        """
        _check_params(self.logits, "logits")
        chex.assert_type(actions, int)
        chex.assert_shape(actions, self.logits.shape[:-1])
        log_p = self.all_log_probs()
        index = actions.astype(jnp.int32)[..., None]
        return jnp.take_along_axis(log_p, index, axis=-1)[..., 0]

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
        actions = self.sample(key)
        return actions, self.log_prob(actions)

    def kl_divergence(self, other: "Categorical") -> Array:
        """KL(self ‖ other) = Σₐ π(a) (log π(a) - log q(a)), shape `[...]`.

        Args:
          other: a `Categorical` with logits of the same shape as `self.logits`.
        """
        chex.assert_equal_shape([self.logits, other.logits])
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
        chex.assert_type(self.log_std, float)
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
        std = self.stddev()
        noise = jax.random.normal(key, self.mean.shape, self.mean.dtype)
        return self.mean + std * noise

    def log_prob(self, actions: Array) -> Array:
        """Log-density of actions, summed over the action components.

          log π(a) = Σᵢ [-½ ((aᵢ - μᵢ) / σᵢ)² - log σᵢ - ½ log 2π].

        Args:
          actions: shape `[..., action_dim]`, same as `mean`, float.

        Returns:
          log π(a), shape `[...]`, dtype of `mean`.
        """
        log_std = self._log_std()
        chex.assert_type(actions, float)
        chex.assert_equal_shape([actions, self.mean])
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
        actions = self.sample(key)
        return actions, self.log_prob(actions)

    def kl_divergence(self, other: "DiagGaussian") -> Array:
        """KL(self ‖ other), summed over the action components, shape `[...]`.

          KL = Σᵢ [log σ'ᵢ - log σᵢ + (σᵢ² + (μᵢ - μ'ᵢ)²) / (2 σ'ᵢ²) - ½].

        Args:
          other: a `DiagGaussian` with a mean of the same shape as `self.mean`.
        """
        chex.assert_equal_shape([self.mean, other.mean])
        log_std, other_log_std = self._log_std(), other._log_std()
        var_ratio = jnp.exp(2.0 * (log_std - other_log_std))
        mean_term = jnp.square((self.mean - other.mean) * jnp.exp(-other_log_std))
        return jnp.sum(
            other_log_std - log_std + 0.5 * (var_ratio + mean_term) - 0.5, axis=-1
        )
