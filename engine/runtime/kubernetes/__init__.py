"""The Kubernetes runtime: the shared workflow core driven by a kopf operator, each step a pod.

How a step's outputs get out of its pod (the capture design)
-------------------------------------------------------------

A step's image is the user's: it may have no shell and no Python. Kubernetes tells the operator a
container's exit code, but not its stdout alone (the log API interleaves stderr), and nothing about
files it wrote. So every step pod carries two containers of ours, both from the executor image (the
operator's own image, which holds the ``sluice`` command and a small static program, ``sluice-run``):

* ``init`` (an init container, ``sluice executor init``) copies ``sluice-run`` into the pod's shared
  ``emptyDir`` (``/var/run/sluice``), writes a script template's source there, and fetches the input
  artifacts, which the main container then sees at their paths through ``subPath`` mounts.
* ``main`` runs ``sluice-run`` with the template's command after ``--``. ``sluice-run`` starts it,
  copies its stdout to both the container log and ``/var/run/sluice/ctr/main/stdout``, and when it
  exits copies the output parameter and artifact paths into ``/var/run/sluice/outputs`` (it runs in
  main's filesystem, so it sees what the step wrote) and records the exit code. Sidecars run under
  ``sluice-run`` too, which stops them once main has exited; containerSet containers wait for their
  dependencies' exit codes the same way.
* ``wait`` (``sluice executor wait``) waits for those exit codes, reads the result (last 256 kB of
  stdout) and the output parameters, uploads output artifacts to the artifact repository (S3), and
  prints one JSON document, the step's outputs, on its stdout.

The operator reads that document from the ``wait`` container's log once the pod has ended (one GET
per step) and feeds it to the core with the phase it derives from the container statuses. The step's
service account needs no permissions at all; the artifact repository's credentials reach only the
executor containers. A container without ``command`` runs its image's entrypoint, which the operator
looks up in the image table (as Argo's emissary does); when it is unknown the step runs unwrapped and
only its exit code and log are observed.

A step stopped before it ends (stop, terminate, a deadline) is not deleted: the operator sets its pod's
``activeDeadlineSeconds`` to 1 and notes why in an annotation. The kubelet then sends every container
SIGTERM, ``sluice-run`` passes it to the command and records its exit, ``wait`` gives main a moment to
do so and still reports the result, the output parameters and the exit code (no output artifacts),
and the node keeps them, as the embedded runtime does for a stopped step.
"""
