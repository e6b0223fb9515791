"""HTTP routes: probes, V1 models and predictions, and the Open Inference Protocol V2."""
