"""lcflow_tf: multi-scale normalizing flows with the likelihood-contribution split (LCMA)."""

from lcflow_tf import bijectors
from lcflow_tf import lc
from lcflow_tf import networks
from lcflow_tf import pretrained
from lcflow_tf.flows import ARCHITECTURES
from lcflow_tf.flows import Flow
from lcflow_tf.flows import FlowConfig
from lcflow_tf.flows import build_flow
from lcflow_tf.keras_model import FlowModel
from lcflow_tf.keras_callbacks import SplitPilot

__version__ = "0.1.0"

__all__ = ["ARCHITECTURES", "Flow", "FlowConfig", "FlowModel", "SplitPilot", "bijectors",
           "build_flow", "lc", "networks", "pretrained"]
