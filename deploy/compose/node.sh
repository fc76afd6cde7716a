#!/bin/sh
# Entry point of a Traffic Center node in compose.yaml: secrets into TC_*, then the command.
. /compose/env.sh
exec traffic-center "$@"
