#!/bin/bash
# `bash results/kernels/by-card.sh H200_CALL OTHER_CALL`: runs the first call's script on an H200 (the card the
# targets name) and the second on any other card, so that one device call serves whichever card comes.
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then bash "$1"; else bash "$2"; fi
