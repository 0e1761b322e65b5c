"""API: the STAC API over the catalog index, map tiles, the viewer, the state of jobs, time
series at a point, snow-season curves and production statistics (HTTP API, payload 2.0). Settings are read here,
once, and passed down."""

from aws_lambda_powertools import Logger

from sansnuages.api.job_routes import add_job_routes
from sansnuages.api.map_routes import add_map_routes
from sansnuages.api.season_routes import add_season_routes
from sansnuages.api.stac import ApiConfig, make_resolver
from sansnuages.api.stats_routes import add_stats_routes
from sansnuages.api.timeseries_routes import add_timeseries_routes
from sansnuages.raster.gdal import use_gdal
from sansnuages.settings import Settings
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import JobStore

logger = Logger()
settings = Settings.from_env()
config = ApiConfig.from_env()
use_gdal(settings)
catalog = Catalog(settings.catalog_table, settings=settings)
app = add_map_routes(make_resolver(catalog, settings, config=config), catalog)
app = add_job_routes(app, JobStore(settings), config)
app = add_timeseries_routes(app, catalog)
app = add_stats_routes(app, catalog)
app = add_season_routes(app, catalog, DataBucket(settings))


@logger.inject_lambda_context
def handler(event, context):
    return app.resolve(event, context)
