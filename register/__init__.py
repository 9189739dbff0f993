"""register: multimodal image registration (optical/SAR, VIS/NIR, VIS/thermal) with SSML-QNet.

The public names are imported on first use (PEP 562), so that ``python -m register.run --help``
and other light entry points do not pay for importing torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> submodule that defines it
_EXPORTS = {"Result": "api", "register_pair": "api", "write_outputs": "outputs",
            "InputError": "checks", "RegistrationFailed": "checks", "Config": "config"}

__all__ = ["Config", "InputError", "RegistrationFailed", "Result", "register_pair",
           "write_outputs", "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
