#!/bin/sh
# The demo project's "build": prints what it sees.
echo "build on $(uname -s) in $(pwd), $(ls | wc -l) files"
