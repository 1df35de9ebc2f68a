# The two commands a fresh machine needs (see README.md):
#   make demo   train a DCGAN on Fashion-MNIST for about six minutes; write its samples, curves and report
#   make test   run the test suite
# Each one installs what it needs first.
PYTHON ?= python3

.PHONY: demo example photos test test-all bench bench-steps mutation info

DEMO_RUN = runs/dcgan-fashion-mnist

demo:  # a second `make demo` continues the run (an interrupted one too) instead of refusing
	scripts/setup.sh viz
	$(PYTHON) -m ganforge.cli train dcgan --steps 3000 --sample-every 500 --eval-every 500 --out $(DEMO_RUN) \
		$$([ -e $(DEMO_RUN)/latest ] && echo --resume)
	$(PYTHON) -m ganforge.cli report $(DEMO_RUN)

example:  # WGAN-GP on the ring of 8 Gaussians, written with the core alone
	scripts/setup.sh viz
	$(PYTHON) examples/wgan_gp_ring8.py --out runs/wgan_gp_ring8

photos:  # real photographs for super-resolution (scikit-image's samples): data/photos/train and test
	scripts/setup.sh viz,photos
	$(PYTHON) -m ganforge.data.photos data/photos

test:
	scripts/setup.sh test
	$(PYTHON) -m pytest

test-all:  # also the slow tests, and many more hypothesis examples
	scripts/setup.sh test
	HYPOTHESIS_PROFILE=thorough $(PYTHON) -m pytest -m "slow or not slow"

bench:  # ganforge against PyTorch CPU in the same run
	scripts/setup.sh bench
	$(PYTHON) -m pytest bench --benchmark-only --benchmark-min-rounds=60

bench-steps:  # one training step of dcgan28, wgangp28 and sngan28 against PyTorch; JSON in bench/results/
	scripts/setup.sh bench
	mkdir -p bench/results
	$(PYTHON) -m pytest bench/test_train_step.py --benchmark-only --benchmark-json bench/results/train_step.json

mutation:  # cosmic-ray over optim, nn, the GAN losses/penalties/steps and the models (hours; GROUPS="optim" for one)
	scripts/setup.sh test
	scripts/mutation.sh $(GROUPS)

info:
	$(PYTHON) -m ganforge.cli info
