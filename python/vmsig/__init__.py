# SPDX-License-Identifier: MIT
"""vmsig: control QEMU/KVM VMs through vmsigd, from Python.

Connect to the daemon, find a VM, watch its events, drive its input and
power, and read (and, under a lease, write) its memory::

    import vmsig

    with vmsig.connect() as bus:                 # $VMSIG_SOCKET or the default
        vm = bus.vm("win11")
        with vm.lease("input"):
            vm.type("hello\\n")
        mem = vm.memory()
        mem.load_symbols("System.map")           # the guest kernel's
        print(mem.read_sym_str("linux_banner"))  # KASLR slide applied
        vm.frame().save_png("shot.png")          # needs vgpu-stream in the guest
        for ev in bus.events(vm=vm, kinds=["STATUS"], timeout=5):
            print(ev)

The wire protocol (docs/protocol.md) is spoken in pure Python; guest memory
is read with libvmie through ctypes. See docs/python.md for the guide and
the API reference; help(vmsig.Bus), help(vmsig.VM), help(vmsig.Memory).
"""

from ._wire import (CAP_INPUT, CAP_MEMCTX, CAP_MEMWRITE, CAP_POWER, CAP_ROSTER, CAP_STATUS)
from .bus import DEFAULT_SOCKET, VM, Bus, EventStream, connect
from .errors import (AmbiguousSymbol, CommandError, ConnectionClosed, ConnectionRefused, FrameError,
                     GuestMemoryError, KernelBaseUnknown, LeaseHeldError, NoProducerError, NoSuchVM, NotReady,
                     PermissionDenied, ProtocolError, StaleContextError, SymbolError, SymbolFileError,
                     UnknownSymbol, VmsigError)
from .events import (Ack, Change, Diag, Event, Kind, LeaseDeny, LeaseEvent, LeaseGrant, LeaseRevoke, Memctx,
                     Opaque, Roster, RunState, Seam, Status)
from .frame import Frame
from .memory import Memory, Translation
from .symbols import Symbols

__version__ = "0.1.0"

__all__ = [
    "connect", "Bus", "VM", "EventStream", "Memory", "Translation", "Symbols", "Frame", "DEFAULT_SOCKET",
    "Event", "Roster", "Memctx", "Status", "Ack", "Diag", "LeaseEvent", "LeaseGrant", "LeaseDeny",
    "LeaseRevoke", "Opaque", "Kind", "RunState", "Change", "Seam",
    "VmsigError", "ConnectionRefused", "ConnectionClosed", "ProtocolError", "CommandError",
    "PermissionDenied", "LeaseHeldError", "NoSuchVM", "NotReady", "StaleContextError", "GuestMemoryError",
    "SymbolError", "SymbolFileError", "UnknownSymbol", "AmbiguousSymbol", "KernelBaseUnknown",
    "FrameError", "NoProducerError",
    "CAP_ROSTER", "CAP_MEMCTX", "CAP_STATUS", "CAP_INPUT", "CAP_POWER", "CAP_MEMWRITE",
]
