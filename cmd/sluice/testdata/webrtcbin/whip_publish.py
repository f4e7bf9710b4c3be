#!/usr/bin/python3
"""A WHIP publisher built on GStreamer's webrtcbin (libnice ICE), for sluice's tests.

usage: whip_publish.py URL [vp8|h264]

It publishes a live test picture (320x240, 30 fps) and a tone (Opus) to URL,
sending the whole offer at once after ICE gathering, as simple WHIP clients do.
On stdout it reports, one line each:
  answer STATUS LOCATION          the answer to the POST
  ice STATE / pc STATE            webrtcbin's ICE and connection states
  count video=N audio=M           on a "count" line on stdin: frames sent so far
  paused video=N audio=M          on a "pause" line: media stops; the final counts
Frames are counted as they enter the payloaders, after the valve that "pause"
closes, so a count is exactly what was sent.
"""

import os
import sys
import threading
import urllib.error
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

Gst.init(None)

URL = sys.argv[1]
CODEC = sys.argv[2] if len(sys.argv) > 2 else "vp8"


def video_branch():
    if CODEC == "h264":
        enc = Gst.ElementFactory.find("x264enc") and (
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=600 "
            "! video/x-h264,profile=constrained-baseline"
        ) or "openh264enc ! video/x-h264,profile=constrained-baseline"
        return (enc + " ! h264parse ! valve name=vvalve ! rtph264pay name=vpay config-interval=-1 "
                "aggregate-mode=zero-latency ! application/x-rtp,media=video,encoding-name=H264,payload=102")
    return ("vp8enc deadline=1 keyframe-max-dist=30 target-bitrate=600000 ! valve name=vvalve "
            "! rtpvp8pay name=vpay ! application/x-rtp,media=video,encoding-name=VP8,payload=96")


PIPELINE = (
    "webrtcbin name=wb bundle-policy=max-bundle "
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 "
    "! videoconvert ! queue ! " + video_branch() + " ! wb. "
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! queue "
    "! opusenc ! valve name=avalve ! rtpopuspay name=apay "
    "! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! wb. "
)

pipe = Gst.parse_launch(PIPELINE)
wb = pipe.get_by_name("wb")
loop = GLib.MainLoop()
lock = threading.Lock()
counts = {"video": 0, "audio": 0}


def say(*words):
    print(*words, flush=True)


def counter(kind):
    def probe(_pad, _info):
        with lock:
            counts[kind] += 1
        return Gst.PadProbeReturn.OK
    return probe


pipe.get_by_name("vpay").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, counter("video"))
pipe.get_by_name("apay").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, counter("audio"))


def post_offer():
    sdp = wb.get_property("local-description").sdp.as_text()
    if os.environ.get("WHIP_DEBUG"):
        sys.stderr.write("offer:\n" + sdp)
    req = urllib.request.Request(URL, data=sdp.encode(), method="POST",
                                 headers={"Content-Type": "application/sdp"})
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            status, loc, body = resp.status, resp.headers.get("Location", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        say("answer", e.code, "-", e.read().decode().replace("\n", " "))
        GLib.idle_add(loop.quit)
        return
    say("answer", status, loc)
    if os.environ.get("WHIP_DEBUG"):
        sys.stderr.write("answer:\n" + body)
    _, msg = GstSdp.SDPMessage.new_from_text(body)
    answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
    wb.emit("set-remote-description", answer, Gst.Promise.new())


def on_gathering(el, _pspec):
    if el.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
        threading.Thread(target=post_offer, daemon=True).start()


def on_offer(promise, _):
    reply = promise.get_reply()
    offer = reply.get_value("offer") if reply else None
    if offer is None:
        say("error", "create-offer:", reply.to_string() if reply else "no reply")
        GLib.idle_add(loop.quit)
        return
    wb.emit("set-local-description", offer, Gst.Promise.new())


def on_negotiation_needed(_el):
    wb.emit("create-offer", None, Gst.Promise.new_with_change_func(on_offer, None))


wb.connect("on-negotiation-needed", on_negotiation_needed)
wb.connect("notify::ice-gathering-state", on_gathering)
wb.connect("notify::ice-connection-state", lambda el, _p: say("ice", el.get_property("ice-connection-state").value_nick))
wb.connect("notify::connection-state", lambda el, _p: say("pc", el.get_property("connection-state").value_nick))


wb.connect("on-new-transceiver", lambda el, trans: trans.set_property(
    "direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY))


def read_commands():
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "pause":
            for v in ("vvalve", "avalve"):
                pipe.get_by_name(v).set_property("drop", True)
        if cmd in ("count", "pause"):
            with lock:
                say("count" if cmd == "count" else "paused", "video=%d" % counts["video"], "audio=%d" % counts["audio"])
        if cmd == "quit":
            break
    GLib.idle_add(loop.quit)


def on_message(_bus, msg):
    if msg.type == Gst.MessageType.ERROR:
        err, dbg = msg.parse_error()
        say("error", err.message, dbg)
        loop.quit()


bus = pipe.get_bus()
bus.add_signal_watch()
bus.connect("message", on_message)
threading.Thread(target=read_commands, daemon=True).start()
pipe.set_state(Gst.State.PLAYING)
try:
    loop.run()
finally:
    pipe.set_state(Gst.State.NULL)
