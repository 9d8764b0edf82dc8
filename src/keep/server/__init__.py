"""x"""

from keep.protocol import errors as errors
