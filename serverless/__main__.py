"""`python -m serverless`: start the RunPod Serverless worker (add `--test_input '{"input": ...}'` to run
one job locally and exit)."""

import logging

import runpod

from serverless.handler import stoppable_handler

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # botocore's debug output carries request headers; keep storage libraries at warnings.
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    runpod.serverless.start({"handler": stoppable_handler})
