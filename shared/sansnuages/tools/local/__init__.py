"""The embedded local AWS: moto server process, resources from the template, and the parts of
AWS that moto does not run (event pump, scheduler, HTTP front for the API)."""
