#!/usr/bin/env node
require('../dist/cli/syncctl.js');
