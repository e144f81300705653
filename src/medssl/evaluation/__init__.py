"""What pretraining buys: frozen-encoder probes and fine-tuning at few labels."""
