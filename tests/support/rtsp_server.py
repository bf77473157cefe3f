#!/usr/bin/python3
"""Loopback RTSP server for tests: loops H.264 mp4 files as live streams (gst-rtsp-server).

Run with the *system* interpreter (needs python3-gi, gir1.2-gst-rtsp-server-1.0 and GStreamer plugins):

    /usr/bin/python3 rtsp_server.py --port 8554 --mount /cam1=/path/clip.mp4

Each mount has one "feeder" pipeline that plays its file in a gapless loop at real-time pace
(filesrc ! qtdemux ! h264parse ! appsink sync=true, re-seeked on SEGMENT_DONE) and copies every access unit into
each reader's own live media (appsrc ! rtph264pay); a reader joining mid-stream starts at the next keyframe. The
feeder runs whether or not anyone is watching, like a camera.

Protocol on stdout: `READY <port>` once listening; `MOUNTED <mount>` after each stdin command
`MOUNT <mount> <path>` (or `ERROR <why>`). The server exits on SIGTERM/SIGINT and when stdin closes (so it dies with its parent).
"""
import argparse
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

MEDIA = (
    "( appsrc name=src is-live=true format=time do-timestamp=true max-buffers=60 leaky-type=upstream"
    " caps=video/x-h264,stream-format=byte-stream,alignment=au"
    " ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
COPY_ALL = (Gst.BufferCopyFlags.FLAGS | Gst.BufferCopyFlags.TIMESTAMPS | Gst.BufferCopyFlags.META
            | Gst.BufferCopyFlags.MEMORY)


class Feeder:
    """Plays one file forever, real-time paced, and copies each access unit into every attached appsrc."""

    def __init__(self, path):
        self.pipeline = Gst.parse_launch(
            f'filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1'
            " ! video/x-h264,stream-format=byte-stream,alignment=au"
            " ! appsink name=sink sync=true emit-signals=true max-buffers=2"
        )
        self.lock = threading.Lock()
        self.targets = {}  # appsrc -> still waiting for a keyframe
        self.pipeline.get_by_name("sink").connect("new-sample", self._on_sample)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)
        self.pipeline.set_state(Gst.State.PAUSED)
        if self.pipeline.get_state(Gst.CLOCK_TIME_NONE)[0] == Gst.StateChangeReturn.FAILURE:
            self.pipeline.set_state(Gst.State.NULL)
            raise ValueError(f"cannot play {path} (H.264 mp4 expected)")
        self._seek(Gst.SeekFlags.FLUSH)
        self.pipeline.set_state(Gst.State.PLAYING)

    def _seek(self, flags):
        self.pipeline.seek(1.0, Gst.Format.TIME, flags | Gst.SeekFlags.SEGMENT,
                           Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1)

    def _on_message(self, _bus, msg):
        if msg.type == Gst.MessageType.SEGMENT_DONE:  # end of file: loop without a flush (gapless)
            self._seek(Gst.SeekFlags.NONE)
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            print(f"feeder error: {err.message} ({dbg})", file=sys.stderr, flush=True)

    def attach(self, media):
        appsrc = media.get_element().get_by_name("src")
        with self.lock:
            self.targets[appsrc] = True
        media.connect("unprepared", lambda _m: self._detach(appsrc))

    def _detach(self, appsrc):
        with self.lock:
            self.targets.pop(appsrc, None)

    def _on_sample(self, sink):
        buf = sink.emit("pull-sample").get_buffer()
        keyframe = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        with self.lock:
            for src, waiting in list(self.targets.items()):
                # Start each reader on a keyframe, and only once its pipeline runs: appsrc's do-timestamp needs
                # the clock, and buffers pushed earlier (e.g. during a catch-up burst) stall the stream.
                if waiting and (not keyframe or src.get_state(0)[1] != Gst.State.PLAYING):
                    continue
                self.targets[src] = False
                out = buf.copy_region(COPY_ALL, 0, buf.get_size())  # shares memory, own timestamps
                out.pts = out.dts = Gst.CLOCK_TIME_NONE  # appsrc stamps it with its own running time
                if src.emit("push-buffer", out) != Gst.FlowReturn.OK:  # not started yet / shutting down
                    self.targets[src] = True
        return Gst.FlowReturn.OK

    def stop(self):
        self.pipeline.set_state(Gst.State.NULL)


class Server:
    def __init__(self, port):
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address("127.0.0.1")
        self.server.set_service(str(port))
        self.server.get_thread_pool().set_max_threads(16)  # else clients share a thread and can starve each other
        self.feeders = {}

    def mount(self, mount, path):
        if mount in self.feeders:
            self.feeders.pop(mount).stop()
        feeder = self.feeders[mount] = Feeder(path)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(MEDIA)
        # One media per reader: a shared media that is being torn down when the next reader arrives makes
        # gst-rtsp-server answer 503 ("can not reuse media"). The feeder fans out to every reader instead.
        factory.set_shared(False)
        factory.connect("media-configure", lambda _f, media: feeder.attach(media))
        self.server.get_mount_points().add_factory(mount, factory)

    def start(self):
        if self.server.attach(None) == 0:
            raise SystemExit(f"cannot listen on 127.0.0.1:{self.server.get_service()}")
        # Drop sessions whose client vanished without TEARDOWN.
        GLib.timeout_add_seconds(2, lambda: self.server.get_session_pool().cleanup() >= 0)
        return self.server.get_bound_port()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="0 = any free port (reported in READY)")
    ap.add_argument("--mount", action="append", default=[], metavar="/NAME=FILE.mp4")
    args = ap.parse_args()

    Gst.init(None)
    loop = GLib.MainLoop()
    server = Server(args.port)
    for spec in args.mount:
        mount, _, path = spec.partition("=")
        server.mount(mount, path)
    port = server.start()
    print(f"READY {port}", flush=True)

    def command(line):
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[0] == "MOUNT":
            try:
                server.mount(parts[1], parts[2])
                print(f"MOUNTED {parts[1]}", flush=True)
            except (ValueError, GLib.Error) as e:
                print(f"ERROR {e}", flush=True)
        elif parts:
            print(f"ERROR unknown command {line!r}", flush=True)
        return False

    def read_stdin():
        for line in sys.stdin:
            GLib.idle_add(command, line.strip())
        GLib.idle_add(loop.quit)  # parent gone

    threading.Thread(target=read_stdin, daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, loop.quit)
    loop.run()
    for feeder in server.feeders.values():
        feeder.stop()


if __name__ == "__main__":
    main()
