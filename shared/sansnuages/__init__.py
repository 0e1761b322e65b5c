"""sansnuages: cloud-free monthly syntheses of Sentinel-2 and Landsat-8 on AWS Lambda.

Modules import their heavy dependencies (rasterio, numpy) themselves, so that a function whose
layers lack them (the API) can still import the package.
"""

__version__ = "0.1.0"
