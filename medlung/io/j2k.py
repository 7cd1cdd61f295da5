"""JPEG 2000 decoding with imagecodecs' OpenJPEG, several threads per film, as a pydicom decoder plugin.

pydicom decodes JPEG 2000 through pylibjpeg-openjpeg with one thread; a
4020x4892 film then takes seconds. ``imagecodecs`` links OpenJPEG with its
thread pool (``numthreads``), and gives the same pixels (bit-identical: tested
on the shared DICOM files and on full-resolution lossless films). It is used
when installed; pydicom's own plugins stay the fallback.

The plugin follows pydicom's decoder-plugin interface (``is_available``,
``DECODER_DEPENDENCIES`` and a frame function); pydicom does the rest (pixel
representation, bits stored, the array's shape).
"""

from __future__ import annotations

import functools
import os
import threading

from pydicom import uid

from medlung import environment

#: The label under which the plugin is added to pydicom's JPEG 2000 decoders.
PLUGIN = "medlung-imagecodecs"
#: JPEG 2000 transfer syntaxes the plugin decodes.
SYNTAXES = (uid.JPEG2000Lossless, uid.JPEG2000, uid.HTJ2KLossless, uid.HTJ2KLosslessRPCL, uid.HTJ2K)
DECODER_DEPENDENCIES = {syntax: ("numpy", "imagecodecs") for syntax in SYNTAXES}
_register_lock = threading.Lock()  # pydicom's add_plugin is not thread-safe; films load in threads


def threads() -> int:
    """Threads per film: ``$MEDLUNG_DECODE_THREADS``, else the CPUs this process may use (at most 8)."""
    chosen = environment.decode_threads()
    if chosen is not None:
        return chosen
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:
        count = os.cpu_count() or 1
    return max(1, min(8, count))


def is_available(transfer_syntax: str) -> bool:
    """Whether imagecodecs is installed with its JPEG 2000 codec."""
    if transfer_syntax not in SYNTAXES:
        return False
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(getattr(imagecodecs, "JPEG2K", None) and imagecodecs.JPEG2K.available)


def _decode_frame(src: bytes, runner) -> bytearray:
    """One frame's pixels as bytes, in the container size of the codestream's precision (as pylibjpeg does)."""
    import imagecodecs

    array = imagecodecs.jpeg2k_decode(src, numthreads=threads())
    if runner.photometric_interpretation in ("YBR_ICT", "YBR_RCT"):
        runner.set_option("photometric_interpretation", "RGB")  # OpenJPEG returns them as RGB
    runner.set_option("bits_allocated", array.dtype.itemsize * 8)
    if array.ndim == 3:
        runner.set_option("planar_configuration", 0)  # colour-by-pixel
    return bytearray(array.tobytes())


def register() -> bool:
    """Add the plugin to pydicom's JPEG 2000 decoders, first in line (once); ``False`` when unavailable."""
    from pydicom.pixels.decoders import base

    if environment.j2k_decoder() == "pydicom":  # pydicom's own plugins only
        return False
    with _register_lock:
        return _register(base)


def _register(base) -> bool:
    done = True
    for syntax in SYNTAXES:
        decoder = base.get_decoder(syntax)
        if PLUGIN not in decoder._available and PLUGIN not in decoder._unavailable:
            decoder.add_plugin(PLUGIN, ("medlung.io.j2k", "_decode_frame"))
            if PLUGIN in decoder._available:  # first in line: tried before pydicom's own plugins
                decoder._available = {PLUGIN: decoder._available.pop(PLUGIN), **decoder._available}
        done = done and PLUGIN in decoder._available
    return done


@functools.cache
def register_once() -> bool:
    """:func:`register`, done once per process (medlung's DICOM reader calls it before each full decode)."""
    return register()
