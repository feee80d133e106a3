"""RunPod Serverless worker: trains one LoRA per job with the pod's engine, datasets and outputs in S3/R2."""
