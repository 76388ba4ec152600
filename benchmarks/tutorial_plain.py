"""The tutorial's run written in plain PyTorch: the whole-process reference for `scripts/fit.py`.

Same data sizes (50 + 50 sequences of 20x1, N(+1, 1) vs N(-1, 1), 80/20 split by scikit-learn), same model
(bidirectional GRU, hidden 32, head on both directions' final states), Adam lr 0.01, 10 full-batch
epochs, validation after each, the same per-epoch lines and a test on an independent draw. No Lightning.

    python benchmarks/tutorial_plain.py                                  # the tutorial's setting
    python benchmarks/tutorial_plain.py --samples_per_class 100000 --batch_size 256 --epochs 3
"""

from __future__ import annotations

import argparse

import torch
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional


class BiGRU(nn.Module):
    def __init__(self, hidden_size: int = 32, num_classes: int = 2) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden_size, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h_n = self.gru(x)
        return self.head(h_n[-2:].transpose(0, 1).reshape(x.shape[0], -1))


def draw(samples_per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.cat([torch.randn(samples_per_class, 20, 1, generator=generator) + m for m in (1.0, -1.0)])
    y = torch.cat([torch.full((samples_per_class,), k, dtype=torch.int64) for k in (0, 1)])
    return x, y


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    model.eval()
    loss, correct = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64)
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            logits = model(x[start : start + batch_size])
            target = y[start : start + batch_size]
            loss += functional.cross_entropy(logits, target, reduction="sum").double()
            correct += (logits.argmax(-1) == target).sum()
    return float(loss) / len(y), float(correct) / len(y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples_per_class", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=0, help="0 = full batch (the tutorial)")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(42)
    generator = torch.Generator().manual_seed(42)
    x, y = draw(args.samples_per_class, generator)
    x_test, y_test = draw(args.samples_per_class, generator)
    train_idx, val_idx = train_test_split(torch.arange(len(y)).numpy(), test_size=0.2, random_state=42, stratify=y)
    x_train, y_train = x[train_idx], y[train_idx]
    x_val, y_val = x[val_idx], y[val_idx]
    batch_size = args.batch_size or len(y_train)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    model = BiGRU().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=generator).to(device)
        total = torch.zeros((), dtype=torch.float64, device=device)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            loss = functional.cross_entropy(model(x_train[index]), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * len(index)
        val_loss, _ = evaluate(model, x_val, y_val, batch_size)
        print(
            f"Epoch [{epoch + 1}/{args.epochs}], Train Loss: {float(total) / len(y_train):.4f}, "
            f"Validation Loss: {val_loss:.4f}"
        )
    _, accuracy = evaluate(model, x_test.to(device), y_test.to(device), batch_size)
    print(f"Test Accuracy: {100 * accuracy:.2f}%")


if __name__ == "__main__":
    main()
