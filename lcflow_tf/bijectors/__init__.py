"""Image bijectors: real `tfp.bijectors.Bijector`s with per-element log-det maps."""

from lcflow_tf.bijectors.act_norm import ActNorm
from lcflow_tf.bijectors.affine_coupling import AffineCoupling
from lcflow_tf.bijectors.affine_coupling import conditioner_channels
from lcflow_tf.bijectors.base import ImageBijector
from lcflow_tf.bijectors.base import collect_trainable_variables
from lcflow_tf.bijectors.base import collect_variables
from lcflow_tf.bijectors.base import forward_with_log_det
from lcflow_tf.bijectors.base import inverse_with_log_det_map
from lcflow_tf.bijectors.channel_permutation import ChannelPermutation
from lcflow_tf.bijectors.factor_out import FactorOut
from lcflow_tf.bijectors.invertible_conv1x1 import InvertibleConv1x1
from lcflow_tf.bijectors.open_junction import OpenJunction
from lcflow_tf.bijectors.squeeze import Squeeze

__all__ = [
    "ActNorm", "AffineCoupling", "ChannelPermutation", "FactorOut", "ImageBijector",
    "InvertibleConv1x1", "OpenJunction", "Squeeze", "collect_trainable_variables",
    "collect_variables", "conditioner_channels", "forward_with_log_det", "inverse_with_log_det_map",
]
