"""DLQ Lambdas (replay and alert); filled by issue C."""
