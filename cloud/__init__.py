"""Submitting the training job from the user's machine: ``lstm-composer submit``
(``python -m cloud.cli``).

The package checks the submit flags and the trainer's own flags (after ``--``), then either sends a
Vertex AI ``CustomJob`` built with google-cloud-aiplatform's request types or prints a Kubernetes
Job manifest for a GKE GPU node pool. It runs only where the job is launched, never inside the job:
the trainer image contains neither this package nor its ``cloud`` extra (google-cloud-aiplatform,
PyYAML), and nothing here imports TensorFlow. docs/CLOUD.md walks through the whole cloud path.
"""
