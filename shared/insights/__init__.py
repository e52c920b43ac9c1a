"""Insight engines that run on a retailer's machine: pricing, forecasts, bundles, trends, value."""
