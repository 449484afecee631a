"""vidjax: spatio-temporal video action recognition in JAX/Flax.

Reimplements the methods of Huang's thesis (TSP/TeSNet, PWTP/DAN, NL/RNL/CPA, MBPM/BQN)
on TSM-ResNet, X3D and MobileNetV2 backbones.
"""
__version__ = "0.1.0"
