"""The ``idm-live`` command: real-time drum transcription (MIDI) and separation (stems) from a mic, file or demo."""

from __future__ import annotations

import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from idm.runtime.sonify import DEFAULT_SONIFY_KIT

from idm.cliopts import (
    MidiChannel,
    NoteLength,
    NoteMap,
    OneLineCommand,
    Replace,
    ReplaceMode,
    StemFormat,
    number,
)
from idm.errors import IDMError
from idm.version import print_version

HELP = """Real-time drum transcription and separation with an exported IDM bundle (no PyTorch needed).

\b
Inputs (--input):
  mic     an audio input device (--device; see --list-devices), processed as it plays
  demo    the built-in demo loop, played in real time (on --output-device or the default output)
  PATH    an audio file: written to --stems-out DIR (default separated/) as DIR/<name>/<stem>.wav +
          <name>.mid, the layout of `idm separate`, as fast as possible (or in real time with --realtime or
          --output-device)

\b
Outputs: MIDI notes (GM drums, channel 10) on a virtual port "IDM Drums" (or --midi-port NAME for an
existing one, e.g. loopMIDI on Windows; --midi-api jack to use JACK); a MIDI file (--midi-file); stems
(--stems-out, --format float|wav16|wav24|flac); stems on the output channels (--monitor kick,snare@2,input@1).
Beside each MIDI file written: note events (--events csv|json|both), the notes played on a sampled kit
(--sonify), and for a file input the onset probabilities (--save-activations) and a piano roll (--plot).

\b
Latency: every note leaves a constant LATENCY after its hit entered the input (never "at the end of
the block it was found in"): the model's look-ahead and peak-picking window, plus a scheduling margin
(one block, the device's input latency, ~2 ms for processing). idm-live prints the number at start; in
a DAW, compensate it with a negative delay on the MIDI track (about -21 ms for the shipped live model
with 256-sample blocks; use the number idm-live prints).
Files written with --stems-out/--midi-file have the latency removed: they line up with the input
sample for sample.

\b
Examples:
  idm-live --list-devices
  idm-live --input demo --bundle my.idm-bundle
  idm-live --input mic --device "USB Audio" --midi-port loopMIDI --midi-file take1.mid
  idm-live --input mic --device system --midi-api jack --stems-out rec/ --monitor all
  idm-live --input song.wav --stems-out stems/ --stems 5

Ctrl-C stops cleanly: the model is flushed and every file is completed (written under a temporary
name and renamed at the end). A file input stopped before its end is kept as DIR/<name>.partial/ (and
<take>.partial.mid), never under the final name; exit 130. A lost audio server or device ends the run
with complete files and exit 1; a MIDI port that goes away is reported and its lost notes counted.
"""

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


class Provider(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class StemMode(str, Enum):
    synth = "synth"
    masked = "masked"
    none = "none"


class Kit(str, Enum):
    auto = "auto"
    clip = "clip"
    running = "running"


class MidiApi(str, Enum):
    auto = "auto"
    jack = "jack"
    alsa = "alsa"
    coremidi = "coremidi"
    winmm = "winmm"


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)


def list_everything() -> None:
    """Print audio devices (PortAudio, with host APIs) and MIDI output ports (per rtmidi API)."""
    from idm.runtime.audio_io import list_devices, reinitialize
    from idm.runtime.midi_out import API_NAMES, import_rtmidi, list_ports

    try:
        reinitialize()
        devices = list_devices()
        typer.echo("audio devices (index  name  [host API]  channels, rate):")
        for d in devices:
            typer.echo("  " + d.describe())
        if not devices:
            typer.echo("  none (is a JACK server running? PortAudio lists JACK only when it is)")
    except IDMError as e:
        typer.echo(f"audio devices: unavailable ({e})")
    try:
        rtmidi = import_rtmidi()
        compiled = set(rtmidi.get_compiled_api())
        typer.echo("MIDI ports idm-live can send to (--midi-port NAME; without it, a virtual port is made):")
        for name, const in API_NAMES.items():
            if getattr(rtmidi, const) not in compiled:
                continue
            ports = list_ports(name)
            typer.echo(f"  [{name}] " + (", ".join(repr(p) for p in ports) if ports else "none (or unavailable)"))
    except IDMError as e:
        typer.echo(f"MIDI ports: unavailable ({e})")


@app.command(help=HELP, cls=OneLineCommand)
def live(
    input: Annotated[str, typer.Option("--input", "-i", help="mic, demo, or an audio file path.")] = "mic",
    bundle: Annotated[
        Path | None,
        typer.Option(
            help="live or paper (the shipped models), or a bundle folder (idm-export); default $IDM_BUNDLE, then live."
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="Input device: index or name (see --list-devices).")] = None,
    output_device: Annotated[
        str | None, typer.Option(help="Output device for monitoring (and real-time pacing of files).")
    ] = None,
    input_channel: Annotated[
        int | None, typer.Option(help="Input channel to use, 1-based (default: mix of all).")
    ] = None,
    channel: Annotated[int | None, typer.Option(hidden=True, help="Old name of --input-channel.")] = None,
    block_size: Annotated[int, typer.Option(help="Audio block in frames (smaller: less latency, more load).")] = 256,
    provider: Annotated[Provider, typer.Option(help="onnxruntime provider.")] = Provider.auto,
    threads: Annotated[int, typer.Option(help="onnxruntime threads (1-256).")] = 1,
    midi_port: Annotated[
        str | None, typer.Option(help="Send to an existing MIDI port (name substring) instead of a virtual one.")
    ] = None,
    no_midi: Annotated[bool, typer.Option("--no-midi", help="No live MIDI output.")] = False,
    midi_api: Annotated[MidiApi, typer.Option(help="MIDI system; auto: JACK if a server runs.")] = MidiApi.auto,
    midi_file: Annotated[Path | None, typer.Option(help="Also record the notes to this MIDI file.")] = None,
    stems_out: Annotated[
        Path | None,
        typer.Option(
            help="Write stems + MIDI to DIR/<name>/ (idm separate layout). A file input with no output option "
            "writes to separated/."
        ),
    ] = None,
    stems: Annotated[int, typer.Option(help="9 classes, or 5 groups (kick/snare/toms/hihat/cymbals).")] = 9,
    mode: Annotated[
        StemMode | None,
        typer.Option(
            help="Stems: synth (one-shots), masked (+1 FFT window; about 5 dB better), none. Default: masked for a "
            "file, synth for mic and demo (lowest latency)."
        ),
    ] = None,
    monitor: Annotated[
        str | None,
        typer.Option(help="Play on the output: stems/groups/all/input, optionally @channel, e.g. 'kick,snare@2'."),
    ] = None,
    delta: Annotated[
        str | None,
        typer.Option(
            help="Sensitivity: the picker's threshold over the local mean, one value or per drum, e.g. "
            "'crash=0.6,hihat_open=0.7' (higher: fewer notes). Default: the model's tuned values."
        ),
    ] = None,
    port_name: Annotated[
        str | None, typer.Option(help="Name of the virtual MIDI port (default 'IDM Drums'); one per instance.")
    ] = None,
    note_length: NoteLength = 50.0,
    midi_channel: MidiChannel = 10,
    note_map: NoteMap = "gm",
    midi_tempo: Annotated[
        float,
        typer.Option(help="Tempo of recorded MIDI files in BPM (notes keep their seconds).", callback=number(20, 400)),
    ] = 120.0,
    wait_ms: Annotated[
        float | None, typer.Option(help="Minimum time between two hits of one drum.", callback=number(0, 10000))
    ] = None,
    freeze_kit: Annotated[bool, typer.Option(help="Keep the kit (one-shots, gains) at its start values.")] = False,
    kit: Annotated[
        Kit, typer.Option(help="Files: clip = the whole file's kit (equals idm separate); running = as live.")
    ] = Kit.auto,
    realtime: Annotated[bool, typer.Option(help="Play a file input in real time (MIDI out on schedule).")] = False,
    seconds: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds of input.", callback=number(0, 10 * 86400, lo_open=True)),
    ] = None,
    events: Annotated[
        str,
        typer.Option(
            help="Note events beside each MIDI file written: none, csv, json or both (time,class,note,velocity,"
            "probability; times equal the MIDI notes')."
        ),
    ] = "none",
    save_activations: Annotated[
        bool, typer.Option(help="File input: also write <name>_activations.npz (per-class onset probabilities).")
    ] = False,
    sonify: Annotated[
        bool, typer.Option(help="Also write <name>_sonified.wav beside each MIDI file: the notes on a sampled kit.")
    ] = False,
    plot: Annotated[
        bool,
        typer.Option(
            help="File input: also write <name>.png beside the MIDI file: waveform, onset probabilities per drum "
            "with the picker's thresholds, and the hits (needs matplotlib: the plot extra)."
        ),
    ] = False,
    sonify_kit: Annotated[
        str, typer.Option(help="Kit of --sonify: a name (idm data kits), a Hydrogen kit folder, .sf2 or folder.")
    ] = DEFAULT_SONIFY_KIT,
    format: StemFormat = "float",
    replace: Replace = None,
    replace_mode: ReplaceMode = "swap",
    force: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    list_devices: Annotated[bool, typer.Option("--list-devices", help="List audio devices and MIDI ports.")] = False,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=print_version, help="Print versions and exit.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No status panel.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    if list_devices:
        list_everything()
        return
    from idm.runtime.audio_format import audio_format
    from idm.runtime.builder import LiveOptions, build_session
    from idm.runtime.events_out import parse_event_formats
    from idm.runtime.extras import ExtraOutputs

    from idm.classes import parse_class_values
    from idm.midi import MidiStyle

    try:
        sensitivity = parse_class_values(delta, "--delta") if delta is not None else None
        style = MidiStyle.of(note_length, midi_channel, note_map, midi_tempo)
        fmt = audio_format(format)
        extras = ExtraOutputs(parse_event_formats(events), save_activations, sonify_kit if sonify else None, audio=fmt,
                              plot=plot)  # fmt: skip
    except (ValueError, IDMError) as e:
        _fail(str(e))
        raise typer.Exit(1) from None
    swapping = replace is not None and replace_mode == "swap"  # the named drums leave the mix as masked stems
    if input not in ("mic", "demo") and stems_out is None and midi_file is None and not realtime and monitor is None:
        stems_out = Path("separated")  # a file run with nowhere to go would compute and drop everything
    opts = LiveOptions(
        input=input,
        bundle=bundle,
        device=device,
        output_device=output_device,
        channel=input_channel if input_channel is not None else channel,
        block_size=block_size,
        provider=provider.value,
        threads=threads,
        midi=not no_midi,
        midi_port=midi_port,
        midi_api=midi_api.value,
        midi_file=midi_file,
        stems_out=stems_out,
        stems=stems,
        mode=(mode or (StemMode.synth if input in ("mic", "demo") and not swapping else StemMode.masked)).value,
        monitor=monitor,
        delta=sensitivity,
        port_name=port_name,
        midi_style=style,
        wait_ms=wait_ms,
        freeze_kit=freeze_kit,
        kit=kit.value,
        realtime=realtime,
        seconds=seconds,
        force=force,
        extras=extras,
        audio_format=fmt,
        replace=replace,
        replace_mode=replace_mode,
    )
    try:
        session = build_session(opts, log=lambda text: typer.echo(f"idm-live: {text}", err=True))
    except IDMError as e:
        if debug:
            raise
        _fail(str(e))
        raise typer.Exit(1) from None
    _run(session, quiet, debug)


def _run(session: Any, quiet: bool, debug: bool) -> None:
    """Start the session, show the panel until the input ends or a signal arrives, then close it."""
    from idm.runtime.status import render_status, summary, undelivered
    from rich.console import Console
    from rich.live import Live

    stops = {"n": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        stops["n"] += 1
        session.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    console = Console(stderr=True)
    try:
        try:
            session.start()
        except IDMError as e:
            session.close()
            if debug:
                raise
            _fail(str(e))
            raise typer.Exit(1) from None
        told: list[Exception] = []

        def tell_lost() -> None:  # a lost server or device is said at once, while the worker still catches up
            lost = session.stream_lost()
            if lost is not None and not told and not debug:
                told.append(lost)
                _fail(str(lost))

        if quiet or not console.is_terminal:
            while not session.wait(0.1):
                tell_lost()
        else:
            with Live(render_status(session), console=console, refresh_per_second=10, transient=False) as lv:
                while not session.wait(0.1):
                    tell_lost()
                    lv.update(render_status(session))
                lv.update(render_status(session))
        if session.error is not None and isinstance(session.error, IDMError) and not debug:
            if session.error not in told:
                _fail(str(session.error))  # at once: saving may take a moment
        elif session.interrupted:
            typer.echo("idm-live: stopping: flushing and saving", err=True)
        written = session.close()
    except IDMError as e:
        if debug:
            raise
        _fail(str(e))
        _exit(session, 1)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    code = 0
    if session.error is not None:
        if debug or not isinstance(session.error, IDMError):
            if _abandoned(session):
                import traceback

                traceback.print_exception(session.error)
                _exit(session, 1)
            raise session.error
        code = 1
    typer.echo(f"idm-live: {summary(session)}", err=True)
    lost = undelivered(session)
    if lost is not None and session.error is None:
        _fail(f"{lost} of {session.scheduler.stats.sent} notes were not delivered: the MIDI port went away")
        code = code or 1
    for p in written:
        typer.echo(f"wrote {p}{'/' if p.is_dir() else ''}")
    if not session.complete and session.stats.processed:
        kept = ", ".join(f"{p}{'/' if p.is_dir() else ''}" for p in session.partial) or "nothing"
        typer.echo(
            f"idm-live: incomplete: the input stopped at {session.stopped_at()}; the partial result is kept as "
            f"{kept}, not under the final name",
            err=True,
        )
        for p in session.partial:
            typer.echo(f"partial {p}{'/' if p.is_dir() else ''}")
        code = code or (130 if session.interrupted else 1)
    _exit(session, code)


def _abandoned(session: Any) -> bool:
    return session.stream is not None and session.stream.abandoned


def _exit(session: Any, code: int) -> None:
    """Exit with ``code``; through ``os._exit`` when an audio stream had to be abandoned (server gone).

    PortAudio's clean-up at interpreter exit would wait for the lost JACK server for good (or abort), so the
    process ends without it, once every file is complete and the output is flushed.
    """
    if _abandoned(session):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``idm-live`` script."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
