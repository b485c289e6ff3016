"""graphdef: declarative computation graphs in YAML, run forward and differentiated backward.

    import graphdef
    model = graphdef.load("models/lecture.yaml")
    model.forward({"a": 3, "b": 5})["e"]            # 48
    model.gradients({"a": 3, "b": 5}, of="e")       # {'a': 6, 'b': 14}
"""
import importlib
import sys

__version__ = "0.1.0"


def _lazy_attributes(package: str, homes: dict):
    """A module's __getattr__ and __dir__ (PEP 562) that import each name in `homes` from its home,
    "module:attribute" (or "module" for a module itself), when the name is first used: `import graphdef`
    costs nothing, and each command imports only what it needs (`graphdef validate` no training)."""

    def __getattr__(name: str):
        if name not in homes:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        module, _, attribute = homes[name].partition(":")
        value = importlib.import_module(module, package)
        value = getattr(value, attribute) if attribute else value
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    def __dir__() -> list:
        return sorted({*vars(sys.modules[package]), *homes})

    return __getattr__, __dir__


__getattr__, __dir__ = _lazy_attributes(__name__, {
    "GraphDefError": ".errors:GraphDefError", "Problem": ".errors:Problem", "Limits": ".format.source:Limits",
    "load": ".format.loader:load", "loads": ".format.loader:loads", "Model": ".engine.model:Model",
    "OPS": ".ops:OPS", "register_op": ".ops:register_op", "evaluate": ".training.loop:evaluate",
    "predict": ".training.loop:predict", "train": ".training.loop:train", "plot": ".training.plot"})
__all__ = ["GraphDefError", "Limits", "Model", "OPS", "Problem", "evaluate", "load", "loads", "predict",
           "register_op", "train"]
