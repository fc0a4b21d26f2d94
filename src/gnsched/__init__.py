"""gnsched: learn a learning-rate schedule with a graph network.

An implementation of the Graph Network-based Scheduler (GNS) of "Learning to Schedule
Learning Rate with Graph Neural Networks" (Xiong et al., ICLR 2022). Modules, in the
order data flows through them:

``graph``     model -> directed operator graph and blocks (§4.1)
``features``  per-node statistics every K steps (§4.1)
``encoder``   hierarchical GCN / GAT over the blocks (§4.1)
``agent``     actor-critic heads, Eq. 4, safetensors files (§4.3)
``ppo``       GAE and the clipped PPO update (appendix D)
``env``       the scheduling MDP as a gymnasium Env, Eq. 3 rewards (§3.2, §4.2)
``target``    training the target network window by window
``schedules`` classic schedules, Eq. 7
``tasks``     model + data + defaults; ``data`` the readers
``train``     Algorithm 1, application (§4.3), fixed-schedule runs
``cli``       ``gnsched demo | train | run | graph``
"""
from .agent import GNSAgent
from .config import AgentConfig, EnvConfig, PPOConfig, TrainConfig
from .errors import GNSError
from .graph import ModelGraph, build_graph

__all__ = ["GNSAgent", "AgentConfig", "EnvConfig", "PPOConfig", "TrainConfig", "GNSError", "ModelGraph",
           "build_graph"]
__version__ = "0.1.0"
