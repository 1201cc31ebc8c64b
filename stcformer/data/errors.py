"""The data loaders' exception (defined with the package's others in ``stcformer.errors``)."""
from stcformer.errors import DataError

__all__ = ["DataError"]
