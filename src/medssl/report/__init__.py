"""Self-contained HTML reports (figures embedded) with the JSON behind them."""
