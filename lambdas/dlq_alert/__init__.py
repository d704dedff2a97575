"""DLQ alerts: peek a DLQ without consuming it, summarise it, publish a readable message to SNS."""
