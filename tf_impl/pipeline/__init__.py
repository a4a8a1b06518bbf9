"""Pipeline parallelism: schedules as data (``schedules``), their timeline simulator (``simulate``) and
their execution on TF devices over the model cut into stages (``execute``)."""
