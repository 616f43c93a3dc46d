#!/bin/sh
# http.server has no configuration to re-read; a real service would get SIGHUP here.
echo "reload: nothing to do for $NS_SERVICE"
