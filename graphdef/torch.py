"""`graphdef.torch`: a model as a torch.nn.Module and back (public API; imports PyTorch, which `import graphdef`
never does)."""
from .engine.torch_module import GraphModule, attribute_key, to_model, to_module, vertex_name  # noqa: F401
