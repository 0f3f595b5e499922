"""MIDI output ports through python-rtmidi (imported lazily): API choice, virtual or existing port, explicit close."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from idm.runtime.audio_io import quiet_stderr

from idm.errors import DeviceError

__all__ = ["API_NAMES", "DEFAULT_PORT_NAME", "MidiPort", "choose_api", "import_rtmidi", "jack_running", "list_ports"]

DEFAULT_PORT_NAME = "IDM Drums"
CLIENT_NAME = "idm-live"
#: ``--midi-api`` names -> rtmidi API constant names.
API_NAMES = {
    "jack": "API_UNIX_JACK",
    "alsa": "API_LINUX_ALSA",
    "coremidi": "API_MACOSX_CORE",
    "winmm": "API_WINDOWS_MM",
}


def import_rtmidi() -> Any:
    """``import rtmidi`` with a one-line error when it is missing."""
    try:
        import rtmidi
    except ImportError:
        raise DeviceError(
            "MIDI output needs the 'python-rtmidi' package: pip install 'inverse-drum-machine[live]' (or use --no-midi)"
        ) from None
    return rtmidi


def _api_const(rtmidi: Any, name: str) -> int:
    return int(getattr(rtmidi, API_NAMES[name]))


def jack_running() -> bool:
    """True if a JACK server is reachable (a probe client is opened and closed)."""
    rtmidi = import_rtmidi()
    if _api_const(rtmidi, "jack") not in rtmidi.get_compiled_api():
        return False
    try:
        with quiet_stderr():
            probe = rtmidi.MidiOut(_api_const(rtmidi, "jack"), name=f"{CLIENT_NAME}-probe")
            probe.get_port_count()
            probe.delete()
    except (SystemError, RuntimeError, rtmidi.RtMidiError):
        return False
    return True


def _platform_default() -> str:
    if sys.platform == "darwin":
        return "coremidi"
    if sys.platform.startswith("win"):
        return "winmm"
    return "alsa"


def choose_api(requested: str = "auto") -> str:
    """The rtmidi API to use: the requested one, or for ``auto`` JACK when a server runs, else the platform's.

    Raises
    ------
    DeviceError
        The API is unknown or not compiled into this python-rtmidi.
    """
    rtmidi = import_rtmidi()
    if requested == "auto":
        return "jack" if jack_running() else _platform_default()
    if requested not in API_NAMES:
        raise DeviceError(f"unknown MIDI API {requested!r}; expected auto, {', '.join(API_NAMES)}")
    if _api_const(rtmidi, requested) not in rtmidi.get_compiled_api():
        have = ", ".join(rtmidi.get_api_name(a) for a in rtmidi.get_compiled_api())
        raise DeviceError(f"MIDI API {requested!r} is not available in this python-rtmidi build (it has: {have})")
    return requested


def _open_error(api: str, e: Exception) -> DeviceError:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if api == "alsa":
        hint = "no ALSA sequencer (/dev/snd/seq); start JACK and pass --midi-api jack, or use --no-midi"
    elif api == "jack":
        hint = "is the JACK server running (same JACK_DEFAULT_SERVER)? or use --midi-api alsa / --no-midi"
    else:
        hint = "or use --no-midi"
    return DeviceError(f"cannot open MIDI ({api}): {msg}; {hint}")


def list_ports(api: str) -> list[str]:
    """Names of the existing MIDI output ports of one API (empty if the API cannot be opened)."""
    rtmidi = import_rtmidi()
    try:
        with quiet_stderr():
            m = rtmidi.MidiOut(_api_const(rtmidi, api), name=f"{CLIENT_NAME}-list")
            ports = list(m.get_ports())
            m.delete()
    except (SystemError, RuntimeError, rtmidi.RtMidiError):
        return []
    return ports


@dataclass
class MidiPort:
    """An open MIDI output: a virtual port (``port=None``) or an existing one matched by name substring.

    Use :meth:`open`, :meth:`send` (from one thread: the scheduler) and :meth:`close`.
    """

    api: str
    port: str | None = None
    virtual_name: str = DEFAULT_PORT_NAME
    client_name: str = CLIENT_NAME

    watch_seconds: float = 0.25  #: how often an existing port's presence is checked (0: never)

    def __post_init__(self) -> None:
        self._out: Any = None
        self.name = ""  #: the opened port's name
        self.lost = False  #: the existing port went away (its program quit): notes are no longer delivered
        self.lost_at: float | None = None  #: monotonic time it was found gone
        self.undelivered = 0  #: note-ons not delivered since (counted by the sending thread)
        self.on_lost: Any = None  #: called once (from the watcher thread) with a one-line message
        self._watch: threading.Thread | None = None
        self._watch_stop = threading.Event()

    def open(self) -> MidiPort:
        """Open the port; raises :class:`DeviceError` with the reason and what to do instead."""
        rtmidi = import_rtmidi()
        try:
            with quiet_stderr():
                out = rtmidi.MidiOut(_api_const(rtmidi, self.api), name=self.client_name)
        except (SystemError, RuntimeError, rtmidi.RtMidiError) as e:
            raise _open_error(self.api, e) from None
        try:
            if self.port is None:
                if self.api == "winmm":
                    raise DeviceError(
                        "Windows MIDI cannot create virtual ports: install a loopback port such as loopMIDI and "
                        "pass --midi-port loopMIDI"
                    )
                try:
                    out.open_virtual_port(self.virtual_name)
                except (NotImplementedError, SystemError, RuntimeError, rtmidi.RtMidiError) as e:
                    raise DeviceError(
                        f"cannot create the virtual MIDI port {self.virtual_name!r} ({self.api}): {e}; use an existing "
                        "port with --midi-port NAME (on Windows a loopMIDI port) or --no-midi"
                    ) from None
                self.name = self.virtual_name
            else:
                ports = list(out.get_ports())
                found = [i for i, p in enumerate(ports) if self.port.lower() in p.lower()]
                if not found:
                    have = ", ".join(repr(p) for p in ports) or "none"
                    raise DeviceError(f"no MIDI output port matches {self.port!r} ({self.api}; ports: {have})")
                exact = [i for i in found if ports[i].lower() == self.port.lower()]
                if len(found) > 1 and not exact:
                    names = ", ".join(repr(ports[i]) for i in found)
                    raise DeviceError(f"several MIDI output ports match {self.port!r}: {names}; be more specific")
                i = (exact or found)[0]
                try:
                    out.open_port(i)
                except (SystemError, RuntimeError, rtmidi.RtMidiError) as e:
                    raise DeviceError(f"cannot open MIDI port {ports[i]!r}: {e}") from None
                self.name = ports[i]
        except DeviceError:
            out.delete()
            raise
        self._out = out
        if self.port is not None and self.watch_seconds > 0:
            self._watch = threading.Thread(target=self._watch_port, name="idm-midi-port-watch", daemon=True)
            self._watch.start()
        return self

    def _watch_port(self) -> None:
        """Watcher thread (never the audio one): mark the port lost once it leaves the system's port list.

        A client of its own lists the ports, so the sending client is never used from two threads.
        """
        rtmidi = import_rtmidi()
        try:  # no quiet_stderr() here: it would also silence the other threads' messages
            probe = rtmidi.MidiOut(_api_const(rtmidi, self.api), name=f"{self.client_name}-watch")
        except (SystemError, RuntimeError, rtmidi.RtMidiError):
            return  # cannot watch: sends go on as before
        try:
            while not self._watch_stop.wait(self.watch_seconds):
                try:
                    present = self.name in probe.get_ports()
                except (SystemError, RuntimeError, rtmidi.RtMidiError):
                    present = False
                if not present:
                    self.lost_at = time.monotonic()
                    self.lost = True
                    if self.on_lost is not None:
                        self.on_lost(
                            f"MIDI port {self.name!r} is gone (its program quit or it was removed): notes are no "
                            "longer delivered; audio and files go on"
                        )
                    return
        finally:
            probe.delete()

    @property
    def is_open(self) -> bool:
        return self._out is not None

    def send(self, message: list[int] | tuple[int, ...]) -> None:
        """Send one short MIDI message (status byte and data bytes); after the port is lost, count it instead."""
        if self.lost:
            if message[0] & 0xF0 == 0x90 and message[2] > 0:
                self.undelivered += 1
            return
        if self._out is not None:
            self._out.send_message(message)

    def close(self) -> None:
        """Close the port and release the client (safe to call twice)."""
        self._watch_stop.set()
        if self._watch is not None and self._watch is not threading.current_thread():
            self._watch.join(2.0)
        if self._out is not None:
            if self.api == "jack" and not self.lost:
                time.sleep(0.05)  # JACK sends from a ring buffer each cycle: let the last messages leave first
            with quiet_stderr():  # a JACK server that went away makes libjack print on every call
                try:
                    self._out.close_port()
                finally:
                    self._out.delete()
                    self._out = None
