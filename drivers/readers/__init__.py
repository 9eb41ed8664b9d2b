"""Reader-library backends: the sector's standard card libraries behind the device interface.

``native`` loads a vendor library (WinDLL/stdcall on Windows, CDLL/cdecl
elsewhere; GBK buffers) and runs its calls on a worker thread with a timeout;
``sscard`` (SSCardDriver), ``heasec`` (NHSA HeaSecReadInfo) and ``ecvoucher``
(NationECCode) wrap one library each; ``device.LibraryReader`` presents them
as the same device the serial ``Terminal`` is (``base.CardDevice``);
``factory.build_device`` picks one from the ``[reader]`` config. See
docs/readers.md.

May import: ``ctypes`` and the standard library, ``drivers`` (errors, results,
the terminal), ``pos_plugin.models`` and ``pos_plugin.rules.identity`` (GB 11643
and masking). Never the sale flow, the journal, the ledger or HTTP: a reader
knows cards, not money. Only ``factory`` names ``pos_plugin.config``, for types.
"""

from drivers.readers.base import CardDevice

__all__ = ["CardDevice"]
