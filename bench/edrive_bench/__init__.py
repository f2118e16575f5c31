"""The parts of bench/run, by role: common (helpers), apache (the server), clients,
phases (the run), report."""
