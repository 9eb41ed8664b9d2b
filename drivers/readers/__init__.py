"""Reader-library backends: the sector's standard card libraries behind the device interface.

``native`` loads a vendor library (WinDLL/stdcall on Windows, CDLL/cdecl
elsewhere; GBK buffers) and runs its calls on a worker thread with a timeout;
``sscard`` (SSCardDriver), ``heasec`` (NHSA HeaSecReadInfo) and ``ecvoucher``
(NationECCode) wrap one library each; ``device.LibraryReader`` presents them
as the same device the serial ``Terminal`` is (``base.CardDevice``);
``factory.build_device`` picks one from the ``[reader]`` config. See
docs/readers.md.
"""

from drivers.readers.base import CardDevice

__all__ = ["CardDevice"]
