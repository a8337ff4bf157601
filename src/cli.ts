#!/usr/bin/env node
// The `baton` command (package.json "bin"). Kept at this path so that a supervisor upgrade's
// default entry stays where older versions look for it; the program is cli/main.ts.
import './cli/main.js';
