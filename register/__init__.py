"""register: multimodal image registration (optical/SAR, VIS/NIR, VIS/thermal) with SSML-QNet."""
__version__ = "0.1.0"

from .api import Result, register_pair, write_outputs  # noqa: E402
from .checks import InputError, RegistrationFailed  # noqa: E402
from .config import Config  # noqa: E402

__all__ = ["Config", "InputError", "RegistrationFailed", "Result", "register_pair",
           "write_outputs", "__version__"]
