"""Reference CNN architectures defined in code (random weights), for the FPGA cost model's
validation and as `--model` choices: their op counts match the published GOP per image.

Each layout follows the variant AMD's Model Zoo measured (the `cf_` / `tf_` / `dk_` rows of
tuner/catalog/fpga_published.csv), because that is what its GOP figure counts:

    resnet50      Caffe ResNet-50 (stride 2 on the first 1x1 of a down-sampling block), 7.7 G
    resnet50_tf   TF-slim ResNet-50 v1 (down-sampling in the last unit of a stage), 6.97 G
    mobilenet_v1  TF MobileNet v1 1.0, 224, 1.14 G
    mobilenet_v2  Caffe MobileNet v2 1.0, 224, 0.59 G
    squeezenet    Caffe SqueezeNet v1.1 (ceil-mode pooling), 227, 0.76 G
    vgg16         VGG-16, 224, 30.96 G
    inception_v1  Caffe GoogLeNet (5x5 branches; LRN left out: no ops counted, no DPU support), 3.16 G
    inception_v1_tf  TF-slim Inception v1 (3x3 in the "5x5" branch), 3.0 G
    inception_v3  TF Inception v3, 299, 11.45 G
    yolov3        Darknet YOLOv3, VOC head (3 x 25 channels per scale), 416, 65.42 G

GOP = 2 x multiply-accumulates of convolutions and fully connected layers per image.
ResNet-18 is the built-in `resnet18` (tuner.models.resnet), so it is not repeated here.

- `registry`: `ARCHITECTURES`, name -> `Architecture` (seeded builder, input shape, published GOP).
- `classifiers`: the ImageNet classifiers (ResNet-50, MobileNet, SqueezeNet, VGG-16, Inception).
- `yolo`: the YOLOv3 detector.
- `blocks`: the building blocks they share (conv + BN + activation, residual, concat, classifier head).

The cache key of a zoo model hashes the source of every module here (`tuner.models.builtin`).
This file imports nothing.
"""
