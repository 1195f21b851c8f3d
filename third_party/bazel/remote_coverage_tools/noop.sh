#!/bin/sh
echo "coverage is not collected offline" >&2
exit 0
