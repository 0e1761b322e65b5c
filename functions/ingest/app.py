"""Ingest: S3 notifications (through SQS) of uploads under incoming/ -> COGs, STAC Item, index."""

import json
import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from sansnuages.raster.gdal import use_gdal
from sansnuages.settings import Settings
from sansnuages.stages.batches import process_batch
from sansnuages.stages.ingest import Ingestor
from sansnuages.stages.ingest_delivery import ingest_delivery
from sansnuages.stages.outcomes import is_last_attempt
from sansnuages.stores import aws
from sansnuages.stores.bucket import decode_event_key

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
settings = Settings.from_env()
use_gdal(settings)
sqs = aws.client("sqs", settings)  # releases failed records early
ingestor = Ingestor.from_settings(settings)
MAX_RECEIVE_COUNT = os.environ.get("INGEST_MAX_RECEIVE_COUNT")


def record_handler(record: SQSRecord) -> None:
    body = json.loads(record.body)
    if body.get("Event") == "s3:TestEvent":
        return
    last = is_last_attempt(record.attributes.approximate_receive_count, MAX_RECEIVE_COUNT)
    for s3_record in S3Event(body).records:
        key = decode_event_key(s3_record.s3.get_object.key)
        result = ingest_delivery(ingestor, key, last)
        if result is None:
            continue
        metrics.add_metric(
            name=f"Products{result.outcome.capitalize()}", unit=MetricUnit.Count, value=1
        )
        logger.info(
            "upload handled",
            extra={
                "key": result.key,
                "outcome": result.outcome,
                "product": result.product_id,
                "error": result.error,
                "reason": result.reason,
            },
        )


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event, context):
    return process_batch(event, context, record_handler, processor, metrics, sqs)
