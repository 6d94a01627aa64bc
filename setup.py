"""Installs the ViViT violence-detection TFX pipeline and its `vivit-tfx` command.

Install with the pinned stack: `pip install -c constraints.txt -r requirements.txt -e .`
(or `bash scripts/bootstrap.sh`, which also finds a Python 3.10).
"""
from setuptools import find_packages, setup

setup(
    name='vivit-violence-tfx',
    version='0.1.0',
    description='TFX pipeline that trains, evaluates and serves a ViViT for violence detection',
    python_requires='>=3.9,<3.11',
    packages=find_packages(include=['vivit_tfx', 'vivit_tfx.*']),
    package_data={'vivit_tfx.schemas': ['*.pbtxt'], 'vivit_tfx.kubeflow': ['Dockerfile']},
    install_requires=[
        'tfx[kfp]==1.16.0', 'opencv-python-headless>=4.8', 'av>=17', 'tqdm>=4.60',
        'matplotlib>=3.5',
        'starlette>=0.37', 'uvicorn>=0.30',  # vivit-tfx serve
        'safetensors>=0.4',  # Hugging Face checkpoints
    ],
    entry_points={'console_scripts': ['vivit-tfx=vivit_tfx.cli:main']},
)
