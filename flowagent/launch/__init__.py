"""``flowagent run``, one module per job: ``target`` resolves what to run and how to start
it, ``supervise`` holds the program and the sidecar as children (signals, process group),
``run`` claims the run directory and drives a run start to end, ``summary`` writes the
run's end and the summary lines, ``process`` is what every run needs of the launcher process
itself (its standard descriptors, its exit with the program's status). ``flowagent run``
starts the sidecar, runs the program under the agent, reports, and passes its exit status
through.

The program must not be able to tell it is being launched: it gets its own stdin/stdout/
stderr, ``sys.argv`` and ``sys.path[0]`` as under ``python``, every signal meant for it exactly
once, and the launcher exits with the program's exit status, or dies by the same signal that
killed it.

Start-up is on every run's critical path, so each module imports only ``os``, ``signal`` and
``sys`` up front; the rest comes when a step needs it (a switched-off run imports ``process``
and ``target`` only, with the C ``_signal``, then becomes the program). The sidecar is the
longest part of a short run, so it is started first, with ``posix_spawn``; the program is
forked and exec'd without ``subprocess`` (which with ``threading``, ``selectors``, ``locale``
and ``re`` would cost the launcher more than the rest of its start), as soon as the sidecar
*process* exists: the sidecar finds the program's ring files whenever it looks, and a
sidecar that fails is reported the moment it exits (the rings keep what the program records
until ``flowagent sidecar --resume`` stores it). Nothing the launcher does after the program
has ended loads a module it did not have (the summary is read with the C JSON scanner).
"""
