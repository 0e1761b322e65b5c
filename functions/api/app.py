"""API: the STAC API over the catalog index (API Gateway HTTP API, payload format 2.0)."""

from aws_lambda_powertools import Logger

from sansnuages.catalog import Catalog
from sansnuages.settings import Settings
from sansnuages.stac_api import make_resolver

logger = Logger()
settings = Settings.from_env()
app = make_resolver(Catalog(settings.catalog_table, settings=settings), settings)


@logger.inject_lambda_context
def handler(event, context):
    return app.resolve(event, context)
