"""The data loaders' exception (defined with the package's others in ``stcformer.errors``)."""
from ..errors import DataError

__all__ = ["DataError"]
