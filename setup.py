"""Installs the ViViT violence-detection TFX pipeline and its `vivit-tfx` command.

Install with the pinned stack: `pip install -c constraints.txt -r requirements.txt -e .`
(or `bash scripts/bootstrap.sh`, which also finds a Python 3.10); requirements.txt holds every
extra and the test tools. The core alone: `pip install -c constraints.txt .`.
"""
from setuptools import find_packages, setup

setup(
    name='vivit-violence-tfx',
    version='0.1.0',
    description='TFX pipeline that trains, evaluates and serves a ViViT for violence detection',
    python_requires='>=3.9,<3.11',
    packages=find_packages(include=['vivit_tfx', 'vivit_tfx.*']),
    package_data={'vivit_tfx.schemas': ['*.pbtxt'], 'vivit_tfx.kubeflow': ['Dockerfile'],
                  'vivit_tfx.audit': ['templates/*.j2']},
    # The core: what the pipeline, the Trainer and the Beam workers run (the image installs it).
    install_requires=[
        'tfx[kfp]==1.16.0', 'opencv-python-headless>=4.8', 'av>=17', 'tqdm>=4.60',
        'safetensors>=0.4',  # Hugging Face checkpoints
    ],
    # Each command that needs an extra names it when it is missing (vivit_tfx/extras.py).
    extras_require={
        'report': ['matplotlib>=3.5'],  # report, lineage, attention, predict --timeline
        'serve': ['starlette>=0.37', 'uvicorn>=0.30', 'matplotlib>=3.5'],  # serve, bench serve
    },
    entry_points={'console_scripts': ['vivit-tfx=vivit_tfx.cli:main']},
)
