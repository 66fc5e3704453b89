#!/bin/sh
echo "hello from devreg's example"
while true; do sleep 3600; done
