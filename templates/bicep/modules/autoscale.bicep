// Autoscale of the App Service plan: out on CPU or on the HTTP queue, in on low CPU after a
// longer cool-down, between a minimum (two or more: health checks and zone redundancy need
// it) and a maximum; an alert fires when the plan sits at its maximum, because then load is
// no longer absorbed.

@description('Tags shared by every resource.')
param tags object

@description('Azure region.')
param location string

@description('Base for names.')
param baseName string

@description('Resource id of the App Service plan.')
param planId string

@description('Fewest instances.')
@minValue(1)
param minInstances int

@description('Most instances.')
@minValue(1)
param maxInstances int

@description('Action group notified when the plan runs at its maximum.')
param actionGroupId string

var scaleOutCooldown = 'PT5M'
var scaleInCooldown = 'PT15M'

resource autoscale 'Microsoft.Insights/autoscalesettings@2022-10-01' = {
  name: '${baseName}-autoscale'
  location: location
  tags: tags
  properties: {
    enabled: true
    targetResourceUri: planId
    profiles: [
      {
        name: 'cpu-and-queue'
        capacity: {
          minimum: string(minInstances)
          maximum: string(maxInstances)
          default: string(minInstances)
        }
        rules: [
          {
            metricTrigger: {
              metricName: 'CpuPercentage'
              metricResourceUri: planId
              timeGrain: 'PT1M'
              statistic: 'Average'
              timeWindow: 'PT5M'
              timeAggregation: 'Average'
              operator: 'GreaterThan'
              threshold: 70
            }
            scaleAction: {
              direction: 'Increase'
              type: 'ChangeCount'
              value: '1'
              cooldown: scaleOutCooldown
            }
          }
          {
            metricTrigger: {
              metricName: 'HttpQueueLength'
              metricResourceUri: planId
              timeGrain: 'PT1M'
              statistic: 'Average'
              timeWindow: 'PT5M'
              timeAggregation: 'Average'
              operator: 'GreaterThan'
              threshold: 50
            }
            scaleAction: {
              direction: 'Increase'
              type: 'ChangeCount'
              value: '1'
              cooldown: scaleOutCooldown
            }
          }
          {
            metricTrigger: {
              metricName: 'CpuPercentage'
              metricResourceUri: planId
              timeGrain: 'PT1M'
              statistic: 'Average'
              timeWindow: 'PT15M'
              timeAggregation: 'Average'
              operator: 'LessThan'
              threshold: 30
            }
            scaleAction: {
              direction: 'Decrease'
              type: 'ChangeCount'
              value: '1'
              cooldown: scaleInCooldown
            }
          }
        ]
      }
    ]
  }
}

resource atMaximum 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${baseName}-autoscale-at-max'
  location: 'global'
  tags: tags
  properties: {
    description: 'The App Service plan has run at its autoscale maximum for 15 minutes.'
    severity: 2
    enabled: true
    scopes: [
      autoscale.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'observedCapacityAtMax'
          criterionType: 'StaticThresholdCriterion'
          metricName: 'ObservedCapacity'
          metricNamespace: 'Microsoft.Insights/autoscalesettings'
          timeAggregation: 'Minimum'
          operator: 'GreaterThanOrEqual'
          threshold: maxInstances
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}

@description('Autoscale setting id.')
output id string = autoscale.id
