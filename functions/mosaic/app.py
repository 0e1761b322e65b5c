"""Mosaic: a finished job -> the area's mosaic (COG, or a part of a large one), preview, Item."""

import json

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from sansnuages.raster.gdal import use_gdal
from sansnuages.settings import Settings
from sansnuages.stages.batches import process_batch
from sansnuages.stages.mosaic import Mosaicker

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
settings = Settings.from_env()
use_gdal(settings)
mosaicker = Mosaicker.from_settings(settings)


def record_handler(record: SQSRecord) -> None:
    body = json.loads(record.body)
    logger.append_keys(job=body.get("job_id"), part=body.get("part"))
    mosaicker.handle(body)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event, context):
    return process_batch(event, context, record_handler, processor, metrics)
