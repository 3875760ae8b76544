#!/usr/bin/env bash
# Detections of every frame as JSON lines (docs/results-schema.json), to a
# file and to an MQTT broker on this machine.
# Usage: pipelines/publish-results.sh VIDEO.mp4 MODEL.onnx LABELS.txt [OUT.jsonl] [mqtt://127.0.0.1:1883/cudainfer/results]
#   Local broker: `mosquitto -p 1883` (Debian package mosquitto); watch with
#   `mosquitto_sub -t cudainfer/results` (package mosquitto-clients).
#   A broker that wants a password: put user:password in a file and add
#   credentials-file=FILE, or export CUDAINFER_MQTT_USERNAME / CUDAINFER_MQTT_PASSWORD;
#   never put them in the location (it is logged). TLS: mqtts://host:8883/topic ca-file=CA.pem
# Needs the plugin on GST_PLUGIN_PATH (or installed) and ONNX Runtime
# through ORT_DYLIB_PATH (see the README).
set -euo pipefail
video=$1 model=$2 labels=$3
out=${4:-results.jsonl}
mqtt=${5:-mqtt://127.0.0.1:1883/cudainfer/results}
gst-launch-1.0 \
  filesrc location="$video" ! qtdemux ! h264parse ! avdec_h264 \
  ! cudapreprocess \
  ! trtinfer model="$model" labels="$labels" \
  ! inferpublish source=camera-1 location="$out" \
  ! inferpublish source=camera-1 location="$mqtt" mqtt-qos=1 max-queued=1000 \
  ! fakesink sync=false
