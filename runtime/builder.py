"""Turns idm-live options into a ready session: bundle, processor, source, devices, MIDI port, clock, sinks."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idm.runtime.live import LiveSession
from idm.runtime.monitor import monitor_names
from idm.runtime.outputs import MidiRecorder, OutputFolder, check_output_file
from idm.runtime.scheduler import Clock, MidiScheduler, MonotonicClock
from idm.runtime.sources import DemoSource, FileSource, RingSource, resampler_lag

from idm.classes import CLASSES
from idm.errors import DeviceError, IDMError

__all__ = ["LiveOptions", "build_session"]

#: Scheduling safety on top of one block and the device's input latency (worker wake-up and compute).
SAFETY_SECONDS = 0.002


@dataclass
class LiveOptions:
    """Everything ``idm-live`` can be told (see its ``--help``)."""

    input: str = "mic"  #: "mic", "demo" or a file path
    bundle: Path | None = None
    device: str | None = None
    output_device: str | None = None
    channel: int | None = None  #: 1-based input channel (default: mix of all): --input-channel
    block_size: int = 256
    provider: str = "auto"
    threads: int = 1
    midi: bool = True
    midi_port: str | None = None
    midi_api: str = "auto"
    midi_file: Path | None = None
    stems_out: Path | None = None
    stems: int = 9
    mode: str = "synth"
    monitor: str | None = None
    delta: float | dict[str, float] | None = None  #: one value, or per class name
    port_name: str | None = None  #: name of the virtual MIDI port (default "IDM Drums")
    midi_style: Any = None  #: idm.midi.MidiStyle: note length, channel, note map, file tempo
    wait_ms: float | None = None
    freeze_kit: bool = False
    kit: str = "auto"  #: "clip" (file pre-pass), "running", or "auto" (clip for files)
    realtime: bool = False
    seconds: float | None = None
    force: bool = False
    file_block: int = 4096
    extras: Any = None  #: idm.runtime.extras.ExtraOutputs: note events, activations, sonification beside MIDI files
    audio_format: Any = None  #: idm.runtime.audio_format.AudioFormat of the stems (default 32-bit float WAV)
    replace: str | None = None  #: --replace spec: samples played at the hits (idm.runtime.replace_kit)
    replace_mode: str = "swap"  #: swap, add or solo

    @property
    def kind(self) -> str:
        return self.input if self.input in ("mic", "demo") else "file"


def _check(o: LiveOptions) -> None:
    if o.block_size < 16 or o.block_size > 16384:
        raise IDMError(f"--block-size must be 16..16384 frames, got {o.block_size}")
    if o.stems not in (5, 9):
        raise IDMError(f"--stems must be 9 or 5, got {o.stems}")
    if o.mode not in ("synth", "masked", "none"):
        raise IDMError(f"--mode must be synth, masked or none, got {o.mode!r}")
    if o.provider not in ("auto", "cpu", "cuda"):
        raise IDMError(f"--provider must be auto, cpu or cuda, got {o.provider!r}")
    if not 1 <= o.threads <= 256:
        raise IDMError(f"--threads must be 1-256, got {o.threads}")
    if o.kit not in ("auto", "clip", "running"):
        raise IDMError(f"--kit must be auto, clip or running, got {o.kit!r}")
    if o.kit == "clip" and o.kind != "file":
        raise IDMError("--kit clip needs a file input (the whole clip is analysed first)")
    if o.stems_out is not None and o.mode == "none":
        raise IDMError("--stems-out needs stems: use --mode synth or masked")
    if o.replace is not None:
        from idm.runtime.engine.replace import REPLACE_MODES

        if o.replace_mode not in REPLACE_MODES:
            raise IDMError(f"--replace-mode must be one of {', '.join(REPLACE_MODES)}, got {o.replace_mode!r}")
        if o.mode != "masked" and o.replace_mode == "swap":
            raise IDMError("--replace-mode swap takes the named drums out of the mix with their masked stems: "
                           "use --mode masked")  # fmt: skip
        if o.stems_out is None and "replaced" not in monitor_names(o.monitor or ""):
            raise IDMError("--replace plays into --stems-out (replaced.wav) or --monitor replaced: add one of them")
    if o.seconds is not None and not o.seconds > 0:
        raise IDMError(f"--seconds must be positive, got {o.seconds}")
    if o.channel is not None and o.channel < 1:
        raise IDMError(f"--input-channel is 1-based, got {o.channel}")
    if o.midi_file is not None:
        check_output_file(o.midi_file, o.force)  # now, not at the end of the take
    if o.extras is not None and o.extras.activations and o.kind != "file":
        raise IDMError("--save-activations needs a file input (the whole clip's onset probabilities)")
    if o.extras is not None and o.extras.plot:
        if o.kind != "file":
            raise IDMError("--plot needs a file input (it draws the whole clip's onset probabilities)")
        from idm.torchcheck import require

        require("matplotlib", "--plot", "plot")
    if o.extras is not None and o.extras.any and o.midi_file is None and o.stems_out is None:
        raise IDMError("--events, --save-activations, --sonify and --plot write beside a MIDI file: add --midi-file or "
                       "--stems-out")  # fmt: skip
    if o.extras is not None and o.midi_file is not None and not o.force:
        for p in o.extras.paths(o.midi_file.with_suffix("")):
            if p.exists():
                raise IDMError(f"{p}: file exists (use --force to replace it)")
    if o.monitor is not None and o.kind == "file" and o.output_device is None:
        raise IDMError("--monitor needs an output device for a file input (--output-device)")


def _processor(bundle: Any, o: LiveOptions, kit: Any = None) -> Any:
    from idm.runtime.engine.processor import ProcessorConfig, StreamProcessor

    cfg = ProcessorConfig(
        provider=o.provider,
        threads=o.threads,
        stems=o.mode,
        freeze=o.freeze_kit or kit is not None,
        kit_embedding=None if kit is None else kit.kit_embedding,
        gains=None if kit is None else kit.gains,
        delta=o.delta,
        wait_ms=o.wait_ms,
    )
    return StreamProcessor(bundle, cfg)


def _stamp() -> str:
    return time.strftime("live-%Y%m%d-%H%M%S")


def build_session(o: LiveOptions, log: Any = None) -> LiveSession:
    """Validate options, open everything (devices, ports, files) and return a session ready to start.

    ``log(text)`` receives one-line notes (what was opened, the latency). Raises :class:`IDMError`
    subclasses with one-line messages; whatever was opened before the failure is closed again.
    """
    from idm.runtime.defaults import default_bundle
    from idm.runtime.engine.bundle import load_bundle

    say = log or (lambda _text: None)
    _check(o)
    opened: list[Any] = []
    try:
        from idm.models import resolve_bundle

        bundle = load_bundle(resolve_bundle(str(o.bundle)) if o.bundle is not None else default_bundle())
        model_rate = int(bundle.manifest["audio"]["sample_rate"])

        # ---- source, kit, output names ----
        file_src: FileSource | None = None
        kit = None
        clip = None
        if o.kind == "file":
            file_src = FileSource(o.input)
            opened.append(file_src)
            from idm.runtime.prepass import analyse_file

            clip = analyse_file(
                bundle,
                file_src,
                threads=o.threads,
                collect=o.extras is not None and (o.extras.activations or o.extras.plot),
            )
            if o.kit in ("auto", "clip") and not o.freeze_kit:
                kit = clip
            name = file_src.path.stem
        elif o.kind == "demo":
            name = "demo_loop"
        else:
            name = _stamp()

        # ---- audio stream ----
        stream = None
        want_output = o.output_device is not None or (o.kind == "demo" and not o.realtime)
        if o.kind == "mic" or want_output:
            try:
                stream = _open_stream(o, model_rate, say)
            except DeviceError as e:
                if o.kind != "demo" or o.output_device is not None:
                    raise
                say(f"no audio output ({e}); the demo runs on the system clock, without sound")

        # ---- processor ----
        proc = _processor(bundle, o, kit)
        opened.append(proc)
        latency = int(proc.latency)
        replacer = None
        if o.replace is not None:  # samples loaded and resampled now, before any audio runs
            from idm.runtime.engine.replace import Replacer
            from idm.runtime.replace_kit import load_replacement

            samples = load_replacement(o.replace, model_rate)
            replacer = Replacer(samples, o.replace_mode, latency, int(proc.max_block))
            say(f"replace ({o.replace_mode}): {', '.join(c for k, c in enumerate(CLASSES) if samples.named[k])} "
                f"from {samples.name} ({replacer.nbytes / 2**20:.1f} MiB)")  # fmt: skip

        # ---- source object ----
        source: Any
        pacer = None
        mono_clock = None
        if o.kind == "mic":
            assert stream is not None and stream.input_ring is not None
            ch = None if o.channel is None else o.channel - 1
            if ch is not None and ch >= stream.spec.input_channels:
                raise IDMError(
                    f"--input-channel {o.channel}: the input device has {stream.spec.input_channels} channel(s)"
                )
            source = RingSource(stream.input_ring, stream.spec.samplerate, ch, max_block=max(8192, 4 * o.block_size))
        elif o.kind == "demo":
            source = DemoSource(_demo_audio(model_rate, say), model_rate)
        else:
            assert file_src is not None
            source = file_src
        paced = o.kind != "file" or o.realtime or o.output_device is not None
        if paced and stream is not None and not stream.has_input:
            st, ratio = stream, source.sample_rate / stream.spec.samplerate

            def pacer() -> int:
                return int(st.frames * ratio)
        elif paced and stream is None:
            mono_clock = MonotonicClock(model_rate)
            clock_for_pace = mono_clock
            src_rate = source.sample_rate

            def pacer() -> int:
                t0 = clock_for_pace.t0
                return 0 if t0 is None else int((time.monotonic() - t0) * src_rate)

        # ---- scheduling margin ----
        # Output sample s is only known once input sample s has arrived (a block later, plus the worker's
        # poll and compute), so notes are due at the capture time of s plus a constant margin. An
        # output-driven stream anchors its clock at the playback time, already a delay behind.
        block_s = o.block_size / (stream.spec.samplerate if stream is not None else source.sample_rate)
        in_lat = stream.latency[0] if stream is not None and stream.has_input else 0.0
        lag = resampler_lag(source.sample_rate, model_rate, o.block_size, "LQ" if o.kind == "mic" else "VHQ")
        need = block_s + in_lat + lag / model_rate + block_s / 4 + SAFETY_SECONDS
        output_driven = stream is not None and not stream.has_input
        margin = math.ceil(need * model_rate) if paced and not output_driven else 0
        plays_replaced = replacer is not None and "replaced" in monitor_names(o.monitor or "")
        if plays_replaced and stream is not None and stream.has_output:
            # the replaced drums and the MIDI notes leave together: the notes wait for the monitor's output delay
            out = stream.delay + round(stream.latency[1] * stream.spec.samplerate)
            margin = max(margin, round(out * model_rate / stream.spec.samplerate))
        total = latency + margin

        # ---- MIDI ----
        from idm.midi import MidiStyle

        style = o.midi_style or MidiStyle()
        scheduler = None
        want_port = o.midi and (paced or o.midi_port is not None)
        if want_port:
            from idm.runtime.midi_out import MidiPort, choose_api

            api = choose_api(o.midi_api)
            port = MidiPort(api, o.midi_port, o.port_name) if o.port_name else MidiPort(api, o.midi_port)
            port.on_lost = lambda text: say(f"warning: {text}")
            port.open()
            opened.append(port)
            clock: Clock | None = None
            if paced:
                clock = stream.clock if stream is not None else mono_clock
            scheduler = MidiScheduler(port, clock, delay_samples=margin, note_seconds=style.note_seconds,
                                      channel=style.channel - 1, notes=[style.note(c) for c in CLASSES])  # fmt: skip
            say(f"MIDI: {'virtual port' if o.midi_port is None else 'port'} {port.name!r} ({api})")

        # ---- files ----
        from idm.runtime.audio_format import DEFAULT_FORMAT

        fmt = o.audio_format or DEFAULT_FORMAT
        extras = None
        if o.extras is not None and o.extras.any:
            from idm.plots import model_label

            label = model_label("live" if o.bundle is None else str(o.bundle), bundle.manifest)
            extras = _extras_writer(o.extras, style, source, proc, clip if o.kind == "file" else None, label)
        folder = None
        writer = None
        replaced_writer = None
        if o.stems_out is not None:
            folder = OutputFolder(o.stems_out, name, o.force)
            opened.append(folder)
            for note in folder.notes:
                say(note)
            from idm.runtime.stems_writer import StemsWriter

            out_rate = source.sample_rate
            quality = "VHQ" if o.kind == "file" else "HQ"
            writer = StemsWriter(folder.path, o.stems, model_rate, out_rate, latency, quality=quality,
                                 subtype=fmt.subtype, extension=fmt.extension)  # fmt: skip
            opened.append(writer)
            if replacer is not None:
                replaced_writer = StemsWriter(folder.path, 9, model_rate, out_rate, latency, quality=quality,
                                              subtype=fmt.subtype, extension=fmt.extension,
                                              names=("replaced",))  # fmt: skip
                opened.append(replaced_writer)
        recorder = MidiRecorder(model_rate, latency, style) if (o.midi_file is not None or folder is not None) else None

        # ---- monitor ----
        monitor = None
        if stream is not None and stream.has_output:
            from idm.runtime.monitor import REPLACED, Monitor, parse_monitor

            spec = o.monitor or "input"
            mix = parse_monitor(spec, stream.spec.output_channels)
            if o.mode == "none" and mix[:, :9].any():
                raise IDMError("--monitor of stems needs --mode synth or masked")
            if replacer is None and mix[:, REPLACED].any():
                raise IDMError("--monitor replaced needs --replace")
            assert stream.output_ring is not None
            monitor = Monitor(stream.output_ring, mix, model_rate, int(stream.spec.samplerate))
            out_frames = stream.delay + round(stream.latency[1] * stream.spec.samplerate)
            say(
                f"monitor: the input plays {out_frames} frames ({out_frames / stream.spec.samplerate * 1000:.1f} ms) "
                f"after it arrived ({stream.delay} buffered + the device's output latency), stems one latency later"
            )
            if replacer is not None and mix[:, REPLACED].any():
                rep = out_frames + round(latency * stream.spec.samplerate / model_rate)
                say(f"monitor: the replaced audio plays {rep} frames ({rep / stream.spec.samplerate * 1000:.1f} ms) "
                    "after the hit (the model's latency + the monitor's)")  # fmt: skip
        elif o.monitor is not None:
            raise IDMError("--monitor needs an output device (--output-device)")

        chunk = o.block_size if paced else o.file_block
        say(
            f"latency {total / model_rate * 1000:.1f} ms ({total} samples at {model_rate} Hz: model {latency}, "
            f"scheduling {margin}); provider {getattr(proc, 'provider', '?')}"
        )
        return LiveSession(
            proc,
            source,
            chunk=chunk,
            pacer=pacer,
            stream=stream,
            scheduler=scheduler,
            recorder=recorder,
            midi_file=o.midi_file,
            stems_writer=writer,
            output_folder=folder,
            monitor=monitor,
            seconds=o.seconds,
            input_quality="LQ" if o.kind == "mic" else "VHQ",
            keep_partial=o.kind != "file",
            monotonic_clock=mono_clock,
            latency_samples=total,
            extras=_bind(extras, recorder),
            replacer=replacer,
            replaced_writer=replaced_writer,
        )
    except BaseException:
        for obj in reversed(opened):
            for meth in ("discard", "close"):
                f = getattr(obj, meth, None)
                if f is not None:
                    with contextlib.suppress(Exception):  # best-effort clean-up on the error path
                        f()
                    break
        raise


def _bind(extras: Any, recorder: MidiRecorder | None) -> Any:
    """``extras(base)`` with the recorder's onsets, or None when there is nothing to write."""
    if extras is None or recorder is None:
        return None
    return lambda base: extras(base, recorder.onsets)


def _extras_writer(cfg: Any, style: Any, source: Any, proc: Any, clip: Any, label: str = "") -> Any:
    """``write(base, onsets)``: the optional files beside a MIDI file (kit loaded now, before any audio)."""
    from idm.runtime.activations_out import Activations
    from idm.runtime.extras import ExtrasWriter

    writer = ExtrasWriter(cfg)

    def activations() -> Activations | None:
        if clip is None or clip.onset_prob is None:
            return None
        p = proc.picker_params
        return Activations(clip.onset_prob, proc.sample_rate / proc.hop, tuple(proc.class_names), p.delta,
                           p.threshold, clip.velocity)  # fmt: skip

    def piano_roll(onsets: list[Any]) -> Any:
        path = getattr(source, "path", None)
        if clip is None or clip.onset_prob is None or path is None:
            return None
        from idm.plots import onsets_piano_roll

        title = f"{Path(path).name}: idm-live, bundle {label}, {len(onsets)} hits"
        return onsets_piano_roll(title, path, clip.onset_prob, onsets, proc.sample_rate / proc.hop, proc.picker_params,
                                 tuple(proc.class_names))  # fmt: skip

    def write(base: Path, onsets: list[Any]) -> list[Path]:
        name = str(getattr(source, "path", "")) or None
        return writer.write(base, onsets, style, source.position, source.sample_rate, activations,
                            None if name is None else Path(name).name, piano_roll)  # fmt: skip

    return write


def _open_stream(o: LiveOptions, model_rate: int, say: Any) -> Any:
    """Resolve devices and build (not start) the audio stream; re-initialises PortAudio once if needed."""
    from idm.runtime.audio_io import AudioStream, StreamSpec, find_device, reinitialize

    def resolve() -> tuple[Any, Any]:
        dev_in = find_device(o.device, "input") if o.kind == "mic" else None
        dev_out = None
        if o.output_device is not None or o.kind == "demo":
            dev_out = find_device(o.output_device, "output")
        return dev_in, dev_out

    try:
        dev_in, dev_out = resolve()
    except IDMError:
        reinitialize()  # a JACK server may have started after PortAudio was initialised
        dev_in, dev_out = resolve()
    main = dev_in or dev_out
    rate = float(main.default_samplerate)
    in_ch = min(2, dev_in.max_input_channels) if dev_in is not None else 1
    if o.channel is not None and dev_in is not None:
        in_ch = min(max(in_ch, o.channel), dev_in.max_input_channels)
    out_ch = min(2, dev_out.max_output_channels) if dev_out is not None else 2
    spec = StreamSpec(
        input_device=None if dev_in is None else dev_in.index,
        output_device=None if dev_out is None else dev_out.index,
        input_channels=in_ch,
        output_channels=out_ch,
        samplerate=rate,
        blocksize=o.block_size,
        host_api=main.hostapi,
    )
    lag = resampler_lag(model_rate, int(rate), o.block_size, "LQ")
    spec.output_delay_blocks = 2 + math.ceil(lag / o.block_size)
    stream = AudioStream(spec, model_rate).open()
    parts = []
    if dev_in is not None:
        parts.append(f"input {dev_in.name} [{dev_in.hostapi}]")
    if dev_out is not None:
        parts.append(f"output {dev_out.name} [{dev_out.hostapi}]")
    lat_in, lat_out = stream.latency
    say(
        f"audio: {', '.join(parts)}, {rate:g} Hz, block {o.block_size}; device latency in {lat_in * 1000:.1f} ms, "
        f"out {lat_out * 1000:.1f} ms"
    )
    return stream


def _demo_audio(rate: int, say: Any) -> Any:
    """The demo loop: rendered with a sampled kit when it is installed, else the synthesized loop."""
    from idm.demo import DEMO_KIT, render_demo_loop, render_kit_demo

    try:
        audio, hits = render_kit_demo(rate)
        say(f"demo: {len(hits)} hits in {audio.shape[0] / rate:.1f} s, played on the sampled kit {DEMO_KIT!r}")
        return audio
    except IDMError as e:
        say(f"demo: sampled kit unavailable ({e}); using the synthesized loop")
        return render_demo_loop(8.0, rate)
